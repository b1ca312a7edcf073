"""Wiring: the Subscription write policy on the pipeline, the worker (and its websocket hub) in
the server's lifespan; the websocket route is ``websocket.router`` (included by the app)."""

from __future__ import annotations

from typing import Any

from fhir_server.config import Settings
from fhir_server.service.pipeline import Pipeline
from fhir_server.subscriptions import endpoints
from fhir_server.subscriptions import operations as _operations  # noqa: F401  (registers $status, $events ...)
from fhir_server.subscriptions.policy import SubscriptionPolicy
from fhir_server.subscriptions.websocket import Hub
from fhir_server.subscriptions.worker import SubscriptionWorker


def allowed_networks(settings: Settings) -> tuple[endpoints.Network, ...]:
    try:
        return endpoints.parse_networks(settings.subscription_allowed_networks)
    except ValueError as exc:
        raise ValueError(f"FHIR_SUBSCRIPTION_ALLOWED_NETWORKS: {exc}") from None


def install_subscriptions(pipeline: Pipeline, settings: Settings) -> None:
    pipeline.policies["Subscription"] = SubscriptionPolicy(pipeline.services.search, allowed_networks(settings))


def new_worker(state: Any, **overrides: Any) -> SubscriptionWorker:
    """A worker for the app's ``state`` (ServerState); ``overrides``: tests (owner, intervals)."""
    s: Settings = state.settings
    options: dict[str, Any] = {
        "base": s.base_url or "http://localhost:8080/fhir",
        "allowed": allowed_networks(s),
        "token_mode": s.auth == "token",
        "poll_interval": s.subscription_poll_interval,
        "lease_seconds": s.subscription_lease_seconds,
        "max_failures": s.subscription_max_failures,
        "retry_base": s.subscription_retry_base,
        "retry_max": s.subscription_retry_max,
    }
    options.update(overrides)
    return SubscriptionWorker(state.db, state.pipeline, **options)


def start_subscription_worker(state: Any) -> SubscriptionWorker:
    """Start the worker of a server process on the running event loop, with the hub of the
    websockets this process holds (``websocket.py``)."""
    worker = new_worker(state)
    worker.hub = Hub()
    state.subscription_worker = worker.start()
    return worker
