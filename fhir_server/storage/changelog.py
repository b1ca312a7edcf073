"""The change log: every committed create, update and delete, in commit order.

Internal API (docs/changelog.md). A write records its change with :func:`record`
inside its own transaction; the row is written at the very end of that
transaction (``Database.write`` calls :func:`write_pending` after the other
deferred rows), so it commits or rolls back with the write.

Commit order: SQLite has one writer at a time, so ``seq`` (AUTOINCREMENT) follows
the commits. PostgreSQL sequence values are handed out when asked for, not when
the transaction commits: a transaction that took 11 could commit before the one
that took 10, and a reader at 11 would skip 10 for ever. So the rows are inserted
under a transaction-scoped advisory lock taken just before the commit: the next
writer gets its numbers only once the previous one is committed and visible
(PostgreSQL releases the lock after making the transaction visible). Only the last
statement of each write transaction is serialised, and group commit makes that
one per batch of writes.

Consumers (subscription delivery, SATUSEHAT sync) keep their own position and
read ``seq > position`` with :func:`read_after`; any number of processes on any
number of machines see the same sequence, gap-free apart from rolled-back numbers
(which never become visible and need no handling). Consumers are woken when a change
commits (``storage/change_signal.py``: in this process, and through PostgreSQL NOTIFY in others).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from fhir_server.storage import change_signal, deferred
from fhir_server.storage.placeholders import driver_cursor, driver_fetchall, driver_fetchone, positional
from fhir_server.storage.tables import change_log

#: pg_advisory_xact_lock key of the change log (any constant unique to this use)
_LOCK_KEY = 0x6368616E6765  # "change"
_ACTOR = "fhir_change_actor"
_COLUMNS = ("res_type", "res_id", "version", "action", "client_id", "recorded_us")
_READ_AFTER = f"SELECT seq, {', '.join(_COLUMNS)} FROM change_log WHERE seq > ? ORDER BY seq LIMIT ?"
_LAST_SEQ = "SELECT COALESCE(MAX(seq), 0) FROM change_log"
_CHANGED_BETWEEN = (
    "SELECT (SELECT 1 FROM change_log WHERE seq = ?), (SELECT 1 FROM change_log WHERE seq > ? AND seq <= ? AND res_type IN ({}) LIMIT 1)"
)
_CHANGED_IDS = "SELECT DISTINCT res_type, res_id FROM change_log WHERE seq > ? AND seq <= ? AND res_type IN ({})"
_COPY = f"COPY change_log ({', '.join(_COLUMNS)}) FROM STDIN"
_INSERT = f"INSERT INTO change_log ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
ACTIONS = ("create", "update", "delete")


@dataclass(frozen=True, slots=True)
class Change:
    seq: int
    res_type: str
    res_id: str
    version: int
    #: create | update | delete
    action: str
    #: the OAuth client that made the change; None: anonymous or the server itself
    client_id: str | None
    recorded_us: int


@contextmanager
def acting_as(conn: Connection, client_id: str | None) -> Iterator[None]:
    """Changes recorded on ``conn`` inside this block are attributed to ``client_id``."""
    previous = conn.info.get(_ACTOR)
    conn.info[_ACTOR] = client_id
    try:
        yield
    finally:
        conn.info[_ACTOR] = previous


def record(conn: Connection, res_type: str, res_id: str, version: int, action: str, recorded_us: int) -> None:
    """Note a committed-to-be change; written at the end of the transaction (or now, outside one)."""
    row = (res_type, res_id, version, action, conn.info.get(_ACTOR), recorded_us)
    batch = deferred.pending(conn)
    if batch is not None:
        batch.changes.append(row)
    else:  # a bare connection (reindex, tests): written in order now
        write_pending(conn, [row])


def write_pending(conn: Connection, rows: list[tuple[object, ...]]) -> None:
    """Insert ``rows`` as the transaction's last statement (see the module docstring)."""
    if not rows:
        return
    types = frozenset(str(row[0]) for row in rows)
    with driver_cursor(conn) as cur:
        if conn.dialect.name == "postgresql":
            sql = positional(f"SELECT pg_advisory_xact_lock(?), {change_signal.NOTIFY_SQL}", "postgresql")
            cur.execute(sql, (_LOCK_KEY, change_signal.payload(types)))
            # COPY: a Bundle's rows in one stream (500 rows: 9.0 -> 2.5 ms against an executemany)
            with cur.copy(_COPY) as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            cur.executemany(_INSERT, rows)
    change_signal.committing(conn, types)


def read_after(conn: Connection, position: int, limit: int = 1000) -> list[Change]:
    """Up to ``limit`` changes with ``seq > position``, in commit order."""
    # straight to the driver: the consumers read a batch of up to 1,000 rows every poll, and
    # SQLAlchemy's row processing was 6 % of the SATUSEHAT sync's CPU
    return [Change(*row) for row in driver_fetchall(conn, _READ_AFTER, (position, limit))]


def last_seq(conn: Connection) -> int:
    """The newest ``seq`` (0 when the log is empty): a new consumer's starting position."""
    # straight to the driver: a transaction Bundle with conditional references reads it twice
    # (service/transaction.py), and SQLAlchemy's statement handling was most of its cost
    return int(driver_fetchone(conn, _LAST_SEQ, ())[0])


def changed_between(conn: Connection, after: int, up_to: int, types: tuple[str, ...]) -> bool:
    """Whether a resource of one of ``types`` may have changed with ``after < seq <= up_to``:
    a change of one is logged there, or the row at ``after`` is gone (a purge took it, and
    perhaps rows after it: what they said is not known), or ``after`` is 0. Two primary-key
    reads: the one row, and as many rows as there are changes in the range."""
    if after <= 0:
        return True
    sql = _CHANGED_BETWEEN.format(", ".join("?" * len(types)))
    kept, changed = driver_fetchone(conn, sql, (after, after, up_to, *types))
    return kept is None or changed is not None


def changed_ids(conn: Connection, after: int, up_to: int, types: tuple[str, ...]) -> set[tuple[str, str]] | None:
    """The (type, id) of each resource of ``types`` changed with ``after < seq <= up_to``, or None
    when that cannot be told (``after`` is 0, or the row at ``after`` is gone: see :func:`changed_between`)."""
    if after <= 0 or not driver_fetchall(conn, "SELECT 1 FROM change_log WHERE seq = ?", (after,)):
        return None
    sql = _CHANGED_IDS.format(", ".join("?" * len(types)))
    return {(str(t), str(i)) for t, i in driver_fetchall(conn, sql, (after, up_to, *types))}


def purge(conn: Connection, before_us: int, *, up_to_seq: int | None = None) -> int:
    """Delete changes recorded before ``before_us`` (retention); the number deleted.
    ``up_to_seq``: none after it either (what the slowest consumer has not read yet stays)."""
    stmt = sa.delete(change_log).where(change_log.c.recorded_us < before_us)
    if up_to_seq is not None:
        stmt = stmt.where(change_log.c.seq <= up_to_seq)
    return conn.execute(stmt).rowcount


def count_before(conn: Connection, before_us: int) -> int:
    """How many changes recorded before ``before_us`` are left (a purge kept them for a consumer)."""
    return conn.execute(sa.select(sa.func.count()).select_from(change_log).where(change_log.c.recorded_us < before_us)).scalar_one()
