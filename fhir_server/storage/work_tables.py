"""Tables of the generic change-log consumers (``storage/claims.py``) and of subscriptions.

``change_cursors``: one row per consumer of the change log (its position and the lease of the
worker that turns changes into work). ``work_partitions``: the units of work workers claim with a
lease (one subscription, one SATUSEHAT patient ...), with their due time, back-off and failures.
The ``subscription_*`` tables belong to ``fhir_server.subscriptions`` (docs/subscriptions.md).
Registered on the shared ``metadata``; created by migrations ``0011_subscriptions`` and ``0017_subscription_websockets``.
"""

from __future__ import annotations

import sqlalchemy as sa

from .tables import BigPk, metadata

change_cursors = sa.Table(
    "change_cursors",
    metadata,
    sa.Column("consumer", sa.String(64), primary_key=True),
    # change_log.seq up to which the consumer has derived its work (exclusive of later rows)
    sa.Column("position", sa.BigInteger, nullable=False),
    sa.Column("lease_owner", sa.String(128), nullable=True),
    sa.Column("lease_until_us", sa.BigInteger, nullable=True),
    sa.Column("updated_us", sa.BigInteger, nullable=False),
)

work_partitions = sa.Table(
    "work_partitions",
    metadata,
    sa.Column("queue", sa.String(32), primary_key=True),
    sa.Column("partition", sa.String(128), primary_key=True),
    # work is waiting from this time on (NULL: nothing to do); cleared when a worker claims it
    sa.Column("wanted_us", sa.BigInteger, nullable=True),
    # backing off after a failure: not claimed before this time
    sa.Column("retry_at_us", sa.BigInteger, nullable=True),
    # consecutive failures (0 after a success)
    sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text, nullable=True),
    # paused partitions are never claimed (a subscription in error or off)
    sa.Column("paused", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("lease_owner", sa.String(128), nullable=True),
    sa.Column("lease_until_us", sa.BigInteger, nullable=True),
    sa.Index(None, "queue", "wanted_us"),
)

subscription_state = sa.Table(
    "subscription_state",
    metadata,
    # the Subscription resource id
    sa.Column("sub_id", sa.String(64), primary_key=True),
    # requested | active | error | off (mirrors Subscription.status); deleted subscriptions: row removed
    sa.Column("status", sa.String(16), nullable=False),
    # the OAuth client that wrote it (NULL: open access): whose scopes limit what it receives
    sa.Column("client_id", sa.String(128), nullable=True),
    # the resource type it watches (an index for the matcher)
    sa.Column("res_type", sa.String(64), nullable=False),
    # JSON of subscriptions.spec.Spec without secrets
    sa.Column("spec", sa.Text, nullable=False),
    # JSON {"headers": [...], "secret": ...}: never in the stored resource (docs/subscriptions.md)
    sa.Column("secrets", sa.Text, nullable=True),
    # the change_log.seq of the write that started it: only later changes notify
    sa.Column("start_seq", sa.BigInteger, nullable=True),
    # events-since-subscription-start: gap-free, assigned by the matcher in the database
    sa.Column("events", sa.BigInteger, nullable=False, server_default="0"),
    # highest event number delivered (or handed to a websocket)
    sa.Column("delivered", sa.BigInteger, nullable=False, server_default="0"),
    # when the last notification (of any kind) was sent: heartbeats count from it
    sa.Column("last_sent_us", sa.BigInteger, nullable=True),
    sa.Column("updated_us", sa.BigInteger, nullable=False),
    # websocket channel: the generation of its latest binding (a bind-with-token bumps it; a
    # socket bound under an older one is stale) and the highest event number the client
    # acknowledged (NULL: it never did; a new binding replays from there)
    sa.Column("ws_binding", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("acked", sa.BigInteger, nullable=True),
    # Subscription.end (the worker turns the subscription off then)
    sa.Column("end_us", sa.BigInteger, nullable=True),
    sa.Index(None, "res_type"),
)

subscription_events = sa.Table(
    "subscription_events",
    metadata,
    sa.Column("sub_id", sa.String(64), primary_key=True),
    sa.Column("event_number", sa.BigInteger, primary_key=True),
    sa.Column("change_seq", sa.BigInteger, nullable=False),
    sa.Column("res_type", sa.String(64), nullable=False),
    sa.Column("res_id", sa.String(64), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("action", sa.String(8), nullable=False),
    sa.Column("recorded_us", sa.BigInteger, nullable=False),
)

subscription_deliveries = sa.Table(
    "subscription_deliveries",
    metadata,
    sa.Column("id", BigPk, primary_key=True, autoincrement=True),
    sa.Column("sub_id", sa.String(64), nullable=False),
    # the notification id (webhook-id header): the same on every retry of one notification
    sa.Column("notification_id", sa.String(128), nullable=False),
    # handshake | heartbeat | event-notification
    sa.Column("kind", sa.String(24), nullable=False),
    sa.Column("first_event", sa.BigInteger, nullable=True),
    sa.Column("last_event", sa.BigInteger, nullable=True),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("started_us", sa.BigInteger, nullable=False),
    sa.Column("duration_us", sa.BigInteger, nullable=False),
    # the HTTP status (NULL: no answer)
    sa.Column("http_status", sa.Integer, nullable=True),
    # ok | failed | refused
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Index(None, "sub_id", "id"),
)

subscription_ws_tokens = sa.Table(
    "subscription_ws_tokens",
    metadata,
    # sha256 of the token (the token itself is only given to the client)
    sa.Column("token_hash", sa.String(64), primary_key=True),
    # comma-separated subscription ids it binds
    sa.Column("sub_ids", sa.Text, nullable=False),
    sa.Column("client_id", sa.String(128), nullable=True),
    sa.Column("expires_us", sa.BigInteger, nullable=False),
)
