"""Subscriptions: R4 criteria-based and Subscriptions R5 Backport IG 1.1.0 topic-based, delivered
from the change log by rest-hook or websocket (docs/subscriptions.md)."""
