"""Waking the change log's consumers as soon as a change commits, instead of at their next poll.

In this process: a transaction that writes change-log rows (``changelog.write_pending``) adds an
after-commit callback (run by ``Database.write`` once the commit succeeded) that calls every
listener :func:`subscribe`\\ d to the engine. Listeners must be quick and thread-safe: the CLI and
threads commit off the event loop.

Across processes and machines (PostgreSQL): the change log's last statement also runs
``pg_notify`` (:data:`NOTIFY_SQL`); PostgreSQL delivers the notification only if and when the
transaction commits, to every session that is listening (:func:`listen`). SQLite has nothing
like it: consumers in other processes notice at their next poll.

A signal is only a hint that something may be new, never the source of truth: a consumer that
misses one (not yet listening, connection lost) finds the change at its next poll, because it
always reads what is new from the change log itself.

A signal names the resource types the transaction changed (in the NOTIFY payload across
processes), so that a consumer may answer some at once and batch the rest (the subscription
worker: a Subscription written while none counts). ``None``: not known (listening just started,
a payload too long to send).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import weakref
from collections.abc import Callable

from sqlalchemy.engine import Connection, Engine

log = logging.getLogger("fhir_server.storage")

#: the PostgreSQL notification channel (per database: schemas sharing one only wake each other)
CHANNEL = "fhir_change_log"
#: appended to the change log's last statement on PostgreSQL (one round trip, no extra statement);
#: its one parameter is :func:`payload`
NOTIFY_SQL = f"pg_notify('{CHANNEL}', ?)"
#: PostgreSQL refuses a payload of 8,000 bytes or more; a longer list of types is sent as ""
_PAYLOAD_MAX = 4000

#: called with the resource types a commit changed (None: not known)
Listener = Callable[[frozenset[str] | None], None]
_listeners: weakref.WeakKeyDictionary[Engine, list[Listener]] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def subscribe(engine: Engine, listener: Listener) -> Callable[[], None]:
    """Call ``listener`` after every commit of change-log rows on ``engine``; returns the
    function that stops it."""
    with _lock:
        _listeners.setdefault(engine, []).append(listener)

    def unsubscribe() -> None:
        with _lock:
            found = _listeners.get(engine, [])
            if listener in found:
                found.remove(listener)

    return unsubscribe


def payload(types: frozenset[str]) -> str:
    """The NOTIFY payload naming ``types`` ("" when too long: read as not known)."""
    text = ",".join(sorted(types))
    return text if len(text) <= _PAYLOAD_MAX else ""


def _types_of(text: str) -> frozenset[str] | None:
    return frozenset(text.split(",")) if text else None


def committing(conn: Connection, types: frozenset[str]) -> None:
    """The open transaction on ``conn`` wrote change-log rows of ``types``: signal after its commit."""
    if _listeners.get(conn.engine):
        conn.info.setdefault("after_commit", []).append(lambda: _fire(conn.engine, types))


def _fire(engine: Engine, types: frozenset[str] | None) -> None:
    with _lock:
        listeners = list(_listeners.get(engine, []))
    for listener in listeners:
        try:
            listener(types)
        except Exception:  # a broken listener must not fail the write that already committed
            log.exception("change-log listener failed")


def waker(event: asyncio.Event, *, only: frozenset[str] | None = None) -> Listener:
    """A listener that sets ``event`` on its own event loop from any thread; with ``only``, for
    a commit that changed one of those types (or types not known) only."""
    loop = asyncio.get_running_loop()
    thread = threading.get_ident()

    def wake(types: frozenset[str] | None) -> None:
        if only is not None and types is not None and only.isdisjoint(types):
            return
        if threading.get_ident() == thread:
            event.set()
        else:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
                loop.call_soon_threadsafe(event.set)

    return wake


def both(first: Listener, second: Listener) -> Listener:
    """One listener calling two (a consumer that wakes differently for some types)."""

    def call(types: frozenset[str] | None) -> None:
        first(types)
        second(types)

    return call


async def listen(engine: Engine, listener: Listener, *, retry_max: float = 30.0) -> None:
    """PostgreSQL: LISTEN on a connection of its own and call ``listener`` for every notification
    with the types it names (and once with None each time listening starts: changes may have
    committed while it was not). Runs until cancelled; reconnects with back-off when the
    connection is lost. Other engines: returns at once (nothing to listen to)."""
    if engine.dialect.name != "postgresql":
        return
    import psycopg

    conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    delay = 0.5
    failing = False
    while True:
        try:
            conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
            async with conn:
                await conn.execute(f"LISTEN {CHANNEL}")
                listener(None)
                delay, failing = 0.5, False
                async for note in conn.notifies():
                    listener(_types_of(note.payload))
        except asyncio.CancelledError:
            raise
        except Exception:  # the database restarted or is unreachable: poll meanwhile, retry
            if not failing:
                log.warning("change-log LISTEN failed; consumers poll until it is back", exc_info=True)
            failing = True
        await asyncio.sleep(delay)
        delay = min(delay * 2, retry_max)
