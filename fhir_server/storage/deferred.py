"""Rows a write transaction defers: search-index rows and version rows.

A resource write needs its ``resources`` row at once (its ``pk``, the version
check, the unique ``(type, id)``), but its version row and its index rows are
only read back by history and search. Inside ``Database.write`` they are
collected here and written with one ``executemany`` per table: on PostgreSQL
that turns ~8 round trips per resource into ~8 per transaction (a 50-entry
Bundle), on SQLite it saves the per-statement Python overhead.

They are written before anything could read them:

* before every SQLAlchemy statement on the connection (searches, conditional
  matching, history, vread inside a Bundle all go through SQLAlchemy): an
  engine event (``install``) flushes first;
* before deleting index rows (an update or delete of a resource written in the
  same transaction) and before the commit (``Database.write``).

Outside ``Database.write`` (reindex, tests on a bare connection) nothing is
deferred: the rows are written immediately, as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

_KEY = "fhir_deferred_rows"


class DeferredRows:
    """Pending ``(sql, rows)`` per statement, in first-use order (so parents come first)."""

    __slots__ = ("batches",)

    def __init__(self) -> None:
        self.batches: dict[str, list[Sequence[Any]]] = {}

    def add(self, sql: str, rows: list[Sequence[Any]]) -> None:
        batch = self.batches.get(sql)
        if batch is None:
            self.batches[sql] = list(rows)
        else:
            batch.extend(rows)

    def __bool__(self) -> bool:
        return bool(self.batches)


def begin(conn: sa.Connection) -> None:
    """Start deferring this connection's version and index rows (until ``flush``/``discard``)."""
    conn.info[_KEY] = DeferredRows()


def discard(conn: sa.Connection) -> None:
    """Stop deferring and drop what is pending (the transaction is being rolled back)."""
    conn.info.pop(_KEY, None)


def pending(conn: sa.Connection) -> DeferredRows | None:
    """The connection's pending rows when it defers, else None (write now)."""
    return conn.info.get(_KEY)


def flush(conn: sa.Connection) -> None:
    """Write everything pending now (one executemany per statement)."""
    rows = conn.info.get(_KEY)
    if not rows:
        return
    batches, rows.batches = rows.batches, {}
    cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        for sql, params in batches.items():
            if len(params) == 1:
                cur.execute(sql, params[0])
            else:
                cur.executemany(sql, params)
    finally:
        cur.close()


def install(engine: sa.Engine) -> None:
    """Flush pending rows before any SQLAlchemy statement runs on the connection."""

    @event.listens_for(engine, "before_cursor_execute")
    def _flush_first(conn: sa.Connection, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if conn.info.get(_KEY):
            flush(conn)
