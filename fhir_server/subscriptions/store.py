"""The subscriptions' own rows: state, events (gap-free numbers), the delivery log, websocket
binding tokens, and their retention.

Every function takes the caller's connection (a write transaction for the writes) and commits
nothing. The claim machinery (cursors, partition leases) is the generic ``storage/claims.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from fhir_server.storage import claims
from fhir_server.storage.work_tables import subscription_deliveries as sd
from fhir_server.storage.work_tables import subscription_events as se
from fhir_server.storage.work_tables import subscription_state as ss
from fhir_server.storage.work_tables import subscription_ws_tokens as wt
from fhir_server.subscriptions.spec import Secrets, Spec
from fhir_server.timeutil import now_us

#: the change-log consumer that turns changes into subscription events
CONSUMER = "subscriptions"
#: partitions (one per subscription) of each channel kind: websockets are served by the process
#: that holds the socket, rest-hooks by any worker
REST_QUEUE = "sub-rest"
WS_QUEUE = "sub-ws"
#: statuses whose subscriptions get events numbered (error too: the Backport IG counts events
#: generated while deliveries fail, and $events can replay them)
COUNTING = ("requested", "active", "error")


def queue_of(spec: Spec) -> str:
    return WS_QUEUE if spec.channel == "websocket" else REST_QUEUE


@dataclass(frozen=True)
class State:
    sub_id: str
    status: str
    client_id: str | None
    spec: Spec
    secrets: Secrets
    start_seq: int | None
    events: int
    delivered: int
    last_sent_us: int | None
    #: websocket: the generation of the latest binding; the event the client acknowledged last
    ws_binding: int = 0
    acked: int | None = None

    @classmethod
    def from_row(cls, row: Any) -> State:
        m = row._mapping
        return cls(
            m["sub_id"],
            m["status"],
            m["client_id"],
            Spec.from_json(m["spec"]),
            Secrets.from_json(m["secrets"]),
            m["start_seq"],
            m["events"],
            m["delivered"],
            m["last_sent_us"],
            m["ws_binding"],
            m["acked"],
        )


@dataclass(frozen=True)
class Event:
    sub_id: str
    number: int
    change_seq: int
    res_type: str
    res_id: str
    version: int
    action: str
    recorded_us: int


def get(conn: Connection, sub_id: str) -> State | None:
    row = conn.execute(sa.select(ss).where(ss.c.sub_id == sub_id)).first()
    return State.from_row(row) if row is not None else None


def all_states(conn: Connection) -> list[State]:
    return [State.from_row(r) for r in conn.execute(sa.select(ss).order_by(ss.c.sub_id))]


#: the rows of the subscriptions that number events
_COUNTS = ss.c.status.in_(COUNTING)


def any_counting(conn: Connection) -> bool:
    """Whether any subscription numbers events (``counting`` is not empty)."""
    return conn.execute(sa.select(ss.c.sub_id).where(_COUNTS).limit(1)).first() is not None


def counting(conn: Connection) -> list[State]:
    """Every subscription that numbers events (started, or starting in the batch being matched)."""
    return [State.from_row(r) for r in conn.execute(sa.select(ss).where(_COUNTS))]


def next_end_us(conn: Connection) -> int | None:
    """The earliest ``Subscription.end`` of a subscription not yet off."""
    return conn.execute(sa.select(sa.func.min(ss.c.end_us)).where(ss.c.status != "off")).scalar_one_or_none()


def save(conn: Connection, sub_id: str, status: str, client_id: str | None, spec: Spec, secrets: Secrets, now: int) -> None:
    """Insert or replace the state of a written Subscription (its counters are kept)."""
    values = {
        "status": status,
        "client_id": client_id,
        "res_type": spec.res_type,
        "spec": spec.to_json(),
        "secrets": secrets.to_json(),
        "end_us": spec.end_us,
        "updated_us": now,
    }
    changed = conn.execute(ss.update().where(ss.c.sub_id == sub_id).values(**values)).rowcount
    if changed == 0:
        conn.execute(ss.insert().values(sub_id=sub_id, events=0, delivered=0, **values))


def set_status(conn: Connection, sub_id: str, status: str, now: int) -> None:
    conn.execute(ss.update().where(ss.c.sub_id == sub_id).values(status=status, updated_us=now))


def remove(conn: Connection, sub_id: str) -> None:
    for queue in (REST_QUEUE, WS_QUEUE):
        claims.drop(conn, queue, sub_id)
    conn.execute(ss.delete().where(ss.c.sub_id == sub_id))
    conn.execute(se.delete().where(se.c.sub_id == sub_id))
    conn.execute(wt.delete().where(wt.c.sub_ids == sub_id))


def start(conn: Connection, sub_id: str, seq: int) -> None:
    """The subscription's own write is at ``seq`` in the change log: later changes count."""
    conn.execute(ss.update().where(ss.c.sub_id == sub_id, ss.c.start_seq.is_(None)).values(start_seq=seq))


def add_events(conn: Connection, sub_id: str, changes: list[Any]) -> int | None:
    """Number ``changes`` (change-log rows) as the next events of ``sub_id``: the counter is read
    and moved in this transaction (the matcher holds the cursor lease, and on PostgreSQL the
    UPDATE locks the row), so numbers are gap-free. The new total (None: the subscription is gone)."""
    if conn.dialect.name == "postgresql":
        total = conn.execute(
            ss.update().where(ss.c.sub_id == sub_id).values(events=ss.c.events + len(changes)).returning(ss.c.events)
        ).scalar_one_or_none()
    else:
        conn.execute(ss.update().where(ss.c.sub_id == sub_id).values(events=ss.c.events + len(changes)))
        total = conn.execute(sa.select(ss.c.events).where(ss.c.sub_id == sub_id)).scalar_one_or_none()
    if total is None:
        return None
    first = total - len(changes) + 1
    conn.execute(
        se.insert(),
        [
            {
                "sub_id": sub_id,
                "event_number": first + i,
                "change_seq": c.seq,
                "res_type": c.res_type,
                "res_id": c.res_id,
                "version": c.version,
                "action": c.action,
                "recorded_us": c.recorded_us,
            }
            for i, c in enumerate(changes)
        ],
    )
    return int(total)


def events(conn: Connection, sub_id: str, first: int, last: int | None = None, limit: int = 1000) -> list[Event]:
    stmt = sa.select(se).where(se.c.sub_id == sub_id, se.c.event_number >= first)
    if last is not None:
        stmt = stmt.where(se.c.event_number <= last)
    rows = conn.execute(stmt.order_by(se.c.event_number).limit(limit))
    return [
        Event(*(r._mapping[k] for k in ("sub_id", "event_number", "change_seq", "res_type", "res_id", "version", "action", "recorded_us")))
        for r in rows
    ]


def mark_sent(conn: Connection, sub_id: str, delivered: int | None, now: int) -> None:
    values: dict[str, Any] = {"last_sent_us": now}
    if delivered is not None:
        values["delivered"] = sa.case((ss.c.delivered < delivered, delivered), else_=ss.c.delivered)
    conn.execute(ss.update().where(ss.c.sub_id == sub_id).values(**values))


def replay(conn: Connection, sub_id: str, from_event: int, now: int) -> State:
    """Deliver ``sub_id``'s events again from ``from_event`` on (the CLI's ``replay`` and
    ``$replay``): its delivered-up-to number goes back and its partition is due now. The caller
    has checked that the subscription exists and is active."""
    state = get(conn, sub_id)
    assert state is not None
    conn.execute(ss.update().where(ss.c.sub_id == sub_id).values(delivered=min(from_event - 1, state.events)))
    claims.want(conn, queue_of(state.spec), sub_id, now)
    return state


def log_attempt(conn: Connection, **values: Any) -> None:
    conn.execute(sd.insert().values(**values))


def attempts(conn: Connection, sub_id: str, limit: int = 50) -> list[dict[str, Any]]:
    stmt = sa.select(sd).where(sd.c.sub_id == sub_id).order_by(sd.c.id.desc()).limit(limit)
    return [dict(r._mapping) for r in conn.execute(stmt)]


def bind_ws(conn: Connection, sub_id: str) -> int | None:
    """A new websocket binding of ``sub_id``: its generation (older bindings, in any process, are
    stale from now on), and delivery goes back to the last event the client acknowledged (if it
    ever acknowledged one): what was sent on a connection that broke may never have arrived.
    None: the subscription is gone."""
    replay = sa.case((sa.and_(ss.c.acked.is_not(None), ss.c.acked < ss.c.delivered), ss.c.acked), else_=ss.c.delivered)
    return conn.execute(
        ss.update().where(ss.c.sub_id == sub_id).values(ws_binding=ss.c.ws_binding + 1, delivered=replay).returning(ss.c.ws_binding)
    ).scalar_one_or_none()


def acknowledge(conn: Connection, sub_id: str, number: int) -> bool:
    """The websocket client has processed events up to ``number`` (never beyond what was sent)."""
    higher = sa.or_(ss.c.acked.is_(None), ss.c.acked < number)
    return conn.execute(ss.update().where(ss.c.sub_id == sub_id, ss.c.delivered >= number, higher).values(acked=number)).rowcount == 1


def ending(conn: Connection, now: int) -> list[str]:
    """Subscriptions whose ``Subscription.end`` has passed and that are not off yet."""
    stmt = sa.select(ss.c.sub_id).where(ss.c.end_us.is_not(None), ss.c.end_us <= now, ss.c.status != "off")
    return [r[0] for r in conn.execute(stmt)]


def purge(conn: Connection, before_us: int) -> tuple[int, int, int]:
    """Retention: delete events and delivery attempts recorded before ``before_us``, and expired
    websocket binding tokens; (events, attempts, tokens) deleted. An event not yet delivered
    goes too: a subscription that stays in error longer than the retention loses its oldest
    backlog (the receiver sees the gap in the event numbers)."""
    events = conn.execute(se.delete().where(se.c.recorded_us < before_us)).rowcount
    attempts = conn.execute(sd.delete().where(sd.c.started_us < before_us)).rowcount
    tokens = conn.execute(wt.delete().where(wt.c.expires_us < now_us())).rowcount
    return events, attempts, tokens


def add_ws_token(conn: Connection, token_hash: str, sub_ids: list[str], client_id: str | None, expires_us: int) -> None:
    conn.execute(wt.delete().where(wt.c.expires_us < expires_us - 24 * 3600 * 1_000_000))
    conn.execute(wt.insert().values(token_hash=token_hash, sub_ids=",".join(sub_ids), client_id=client_id, expires_us=expires_us))


def ws_token(conn: Connection, token_hash: str, now: int) -> tuple[list[str], str | None, int] | None:
    """(subscription ids, client, expiry) of an unexpired binding token."""
    stmt = sa.select(wt.c.sub_ids, wt.c.client_id, wt.c.expires_us).where(wt.c.token_hash == token_hash, wt.c.expires_us >= now)
    row = conn.execute(stmt).first()
    return (row[0].split(","), row[1], int(row[2])) if row is not None else None
