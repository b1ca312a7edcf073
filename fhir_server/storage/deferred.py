"""Rows a write transaction defers: search-index rows and version rows.

A resource write needs its ``resources`` row at once (its ``pk``, the version
check, the unique ``(type, id)``), but its version row and its index rows are
only read back by history and search. Inside ``Database.write`` they are
collected here and written with one COPY (PostgreSQL) or executemany (SQLite)
per table: on PostgreSQL that turns ~8 round trips per resource into ~8 per
transaction (a 50-entry Bundle), on SQLite it saves per-statement Python overhead.

They are written before anything could read them:

* before every SQLAlchemy statement on the connection (searches, conditional
  matching, history, vread inside a Bundle all go through SQLAlchemy): an
  engine event (``install``) flushes first; the look-up of a resource's current row
  (``repository.get_current``, straight to the driver) writes only the pending
  ``resources`` rows first;
* before deleting index rows or updating a ``resources`` row (an update or delete
  of a resource written in the same transaction) and before the commit
  (``Database.write``).

On PostgreSQL the new ``resources`` rows of a transaction Bundle can be deferred
too: their keys are reserved from the sequence in one statement
(``repository.reserve_pks``), and every row goes in with COPY.

Outside ``Database.write`` (reindex, tests on a bare connection) nothing is
deferred: the rows are written immediately, as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

from fhir_server.storage.placeholders import driver_cursor, driver_executemany, positional

_KEY = "fhir_deferred_rows"
#: a claimed ``resources`` row (repository.prefetched_current) filled in as version 1
_FILL_CLAIMED = "UPDATE resources SET version = 1, updated_us = ?, deleted = FALSE, body = ? WHERE pk = ? AND version = 0"


#: PostgreSQL connections plan every prepared statement for its values (db.py sets it on each:
#: a search's best plan depends on them); a flush's COPYs run with ``auto`` and then set it back
SEARCH_PLAN_CACHE_MODE = "force_custom_plan"
_PLANS_KEPT = "SET LOCAL plan_cache_mode = auto"
_PLANS_CUSTOM = f"SET LOCAL plan_cache_mode = {SEARCH_PLAN_CACHE_MODE}"


#: (table, column names)
Target = tuple[str, tuple[str, ...]]


class DeferredRows:
    """Pending rows per (table, columns); ``parents`` (new ``resources`` rows) are written first."""

    __slots__ = ("batches", "changes", "claimed", "parents", "reserved_pks")

    def __init__(self) -> None:
        self.batches: dict[Target, list[Sequence[Any]]] = {}
        self.parents: dict[Target, list[Sequence[Any]]] = {}
        #: (updated_us, body, pk) of claimed ``resources`` rows to fill in as version 1 (PostgreSQL,
        #: see repository.prefetched_current): written with the parents, as one executemany
        self.claimed: list[tuple[int, bytes, int]] = []
        #: primary keys taken from the ``resources`` sequence for new rows (PostgreSQL, see reserve_pks)
        self.reserved_pks: list[int] = []
        #: change-log rows: written last, just before the commit (storage/changelog.py), never by ``flush``
        self.changes: list[tuple[Any, ...]] = []

    def add(self, table: str, columns: tuple[str, ...], rows: Sequence[Sequence[Any]], *, parent: bool = False) -> None:
        """Queue ``rows`` (tuples in ``columns`` order); ``parent``: rows others refer to (a foreign key)."""
        target = self.parents if parent else self.batches
        batch = target.get((table, columns))
        if batch is None:
            target[(table, columns)] = list(rows)
        else:
            batch.extend(rows)

    def __bool__(self) -> bool:
        return bool(self.batches) or bool(self.parents) or bool(self.claimed)


def begin(conn: sa.Connection) -> None:
    """Start deferring this connection's version and index rows (until ``flush``/``discard``)."""
    conn.info[_KEY] = DeferredRows()


def discard(conn: sa.Connection) -> None:
    """Stop deferring and drop what is pending (the transaction is being rolled back)."""
    conn.info.pop(_KEY, None)


def pending(conn: sa.Connection) -> DeferredRows | None:
    """The connection's pending rows when it defers, else None (write now)."""
    return conn.info.get(_KEY)


def fill_claimed(conn: sa.Connection, updated_us: int, body: bytes, pk: int) -> None:
    """Fill in a claimed ``resources`` row: with the other pending rows when the connection
    defers (one executemany for the transaction), else now."""
    rows = pending(conn)
    if rows is not None:
        rows.claimed.append((updated_us, body, pk))
    else:
        driver_executemany(conn, _FILL_CLAIMED, [(updated_us, body, pk)])


def flush(conn: sa.Connection, *, parents_only: bool = False) -> None:
    """Write everything pending now: COPY per table on PostgreSQL (a fraction of the server
    work of row-by-row INSERTs), one executemany per table on SQLite. ``parents_only``: only
    the pending ``resources`` rows."""
    rows = conn.info.get(_KEY)
    if not rows:
        return
    claimed, rows.claimed = rows.claimed, []
    # the rows that refer to ``resources`` (index rows) come with a full flush only
    referring = not parents_only and bool(rows.batches)
    if parents_only:
        batches = list(rows.parents.items())
        rows.parents = {}
    else:
        batches = [*rows.parents.items(), *rows.batches.items()]
        rows.parents, rows.batches = {}, {}
    if not batches and not claimed:
        return
    postgresql = conn.dialect.name == "postgresql"
    # each claimed row is filled by an UPDATE, and the copied index rows' owners are checked by a
    # query of their tables' trigger (alembic 0025), which the connections' force_custom_plan
    # (db.py: for the searches) would plan anew on every run (when they were foreign keys, for
    # every row: ~17 % of PostgreSQL's CPU in an import; a claim's UPDATE 72 -> 45 us): with auto
    # they are planned once per backend. ``resources`` rows alone have no owner to check
    plans_kept = postgresql and (referring or bool(claimed))
    with driver_cursor(conn) as cur:
        if plans_kept:
            cur.execute(_PLANS_KEPT)
        if claimed:  # PostgreSQL only (claims are); one pipelined executemany
            cur.executemany(positional(_FILL_CLAIMED, conn.dialect.name), claimed)
        for (table, columns), params in batches:
            if postgresql:
                with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                    for row in params:
                        copy.write_row(row)
            else:
                sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
                cur.executemany(sql, params)
        if plans_kept:
            cur.execute(_PLANS_CUSTOM)


def install(engine: sa.Engine) -> None:
    """Flush pending rows before any SQLAlchemy statement runs on the connection."""

    @event.listens_for(engine, "before_cursor_execute")
    def _flush_first(conn: sa.Connection, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if conn.info.get(_KEY):
            flush(conn)
