"""The sync's own rows (``storage/satusehat_tables.py``): items, the NIK -> IHS cache, facilities.

Every function takes the caller's connection (a write transaction of the worker, through the
pipeline's write path, for the writes) and commits nothing. Claiming is ``storage/claims.py``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from fhir_server.storage import claims, upsert
from fhir_server.storage.placeholders import driver_executemany, driver_fetchall
from fhir_server.storage.satusehat_tables import satusehat_facilities as sf
from fhir_server.storage.satusehat_tables import satusehat_ids as si
from fhir_server.storage.satusehat_tables import satusehat_items as it

#: the change-log consumer and the work queue of the sync
CONSUMER = "satusehat"
QUEUE = "satusehat"
STATUSES = ("pending", "waiting", "synced", "failed", "held", "not-applicable")


@dataclass(frozen=True)
class Item:
    res_type: str
    res_id: str
    facility: str
    partition: str
    status: str
    satusehat_id: str | None
    version: int
    synced_version: int | None
    attempts: int
    last_attempt_us: int | None
    last_error: str | None
    rule: str | None
    outcome: str | None
    waits_for: str | None
    in_doubt: bool
    queued_us: int
    updated_us: int

    @property
    def ref(self) -> str:
        return f"{self.res_type}/{self.res_id}"


def _item(row: Any) -> Item:
    return Item(**{k: row._mapping[k] for k in Item.__dataclass_fields__})


def get(conn: Connection, res_type: str, res_id: str, *, for_update: bool = False) -> Item | None:
    """``for_update``: the row locked until the transaction ends (PostgreSQL; SQLite's one writer
    serialises anyway)."""
    row = conn.execute(_get_statement(for_update), {"rt": res_type, "ri": res_id}).first()
    return _item(row) if row is not None else None


@lru_cache(maxsize=2)
def _get_statement(for_update: bool) -> Any:
    # built once: the worker runs it per item, often inside SQLite's write lock
    stmt = sa.select(it).where(it.c.res_type == sa.bindparam("rt"), it.c.res_id == sa.bindparam("ri"))
    return stmt.with_for_update() if for_update else stmt


def noted(
    conn: Connection, res_type: str, res_id: str, version: int, facility: str, partition: str, now: int, *, status: str = "pending"
) -> None:
    """A new local version to send (or ``not-applicable``): the item is due again, whatever it was."""
    noted_many(conn, [Noted(res_type, res_id, version, facility, partition)], now, status=status)


@dataclass(frozen=True, slots=True)
class Noted:
    """A local version to note (the arguments of :func:`noted`)."""

    res_type: str
    res_id: str
    version: int
    facility: str
    partition: str


def noted_many(conn: Connection, notes: list[Noted], now: int, *, status: str = "pending") -> None:
    """:func:`noted` for several items in one executemany; an item already pending keeps its place
    in the queue (``queued_us``)."""
    driver_executemany(conn, _NOTED_SQL, [(n.res_type, n.res_id, n.facility, n.partition, status, n.version, now, now) for n in notes])


# straight to the driver: the worker runs it for every change it ingests, inside SQLite's write lock
_NOTED_SQL = (
    f"INSERT INTO {it.name} (res_type, res_id, facility, partition, status, version, attempts, last_error, rule, outcome,"
    " waits_for, in_doubt, queued_us, updated_us) VALUES (?, ?, ?, ?, ?, ?, 0, NULL, NULL, NULL, NULL, FALSE, ?, ?)"
    " ON CONFLICT (res_type, res_id) DO UPDATE SET facility = excluded.facility, partition = excluded.partition,"
    " status = excluded.status, version = excluded.version, attempts = 0, last_error = NULL, rule = NULL, outcome = NULL,"
    f" waits_for = NULL, queued_us = CASE WHEN {it.name}.status = 'pending' THEN {it.name}.queued_us ELSE excluded.queued_us END,"
    " updated_us = excluded.updated_us"
)


def update(conn: Connection, item: Item, now: int, **values: Any) -> None:
    update_many(conn, [(item, values)], now)


def update_many(conn: Connection, updates: list[tuple[Item, dict[str, Any]]], now: int) -> None:
    """Each item's columns set, in the order given: one executemany per run of updates setting the
    same columns, straight to the driver (the worker records a chunk's outcomes at once, inside
    SQLite's write lock: through SQLAlchemy each UPDATE cost ~100 µs)."""
    for columns, run in itertools.groupby(updates, key=lambda u: tuple(sorted(u[1]))):
        rows = [(now, *(values[c] for c in columns), item.res_type, item.res_id) for item, values in run]
        driver_executemany(conn, _update_sql(columns), rows)


@lru_cache(maxsize=64)
def _update_sql(columns: tuple[str, ...]) -> str:
    """Built once per set of columns: the worker updates items with a handful of column sets."""
    unknown = set(columns) - set(it.c.keys())
    if unknown:
        raise ValueError(f"not columns of {it.name}: {sorted(unknown)}")
    sets = ", ".join(["updated_us = ?", *(f"{c} = ?" for c in columns)])
    return f"UPDATE {it.name} SET {sets} WHERE res_type = ? AND res_id = ?"


def due_in(conn: Connection, partition: str) -> list[Item]:
    """The pending items of a partition."""
    rows = conn.execute(sa.select(it).where(it.c.partition == partition, it.c.status == "pending"))
    return [_item(r) for r in rows]


def current(conn: Connection, items: list[Item]) -> list[Item]:
    """The items as stored now, in the order given (those gone are left out)."""
    keys = [(i.res_type, i.res_id) for i in items]
    found = by_keys(conn, keys)
    return [found[k] for k in keys if k in found]


def by_keys(conn: Connection, keys: list[tuple[str, str]]) -> dict[tuple[str, str], Item]:
    """The stored items of these (type, id) keys: one statement per type, straight to the driver
    (the worker asks this for every chunk it ingests or sends, inside SQLite's write lock; through
    SQLAlchemy an expanding ``IN`` cost ~150 µs to render). Not a row-value ``(res_type, res_id)
    IN (VALUES ...)``: SQLite scans the whole table for that (5 ms at 20,000 items) where
    ``res_type = ? AND res_id IN (...)`` walks the primary key."""
    ids: dict[str, list[str]] = {}
    for res_type, res_id in keys:
        ids.setdefault(res_type, []).append(res_id)
    found: dict[tuple[str, str], Item] = {}
    for res_type, of_type in ids.items():
        sql = f"{_SELECT_ITEMS} WHERE res_type = ? AND res_id IN ({', '.join('?' * len(of_type))})"
        for row in driver_fetchall(conn, sql, (res_type, *of_type)):
            found[(row[0], row[1])] = _raw_item(row)
    return found


def _raw_item(row: tuple[Any, ...]) -> Item:
    """An item from a driver row of :data:`_SELECT_ITEMS`."""
    values = list(row)
    values[_IN_DOUBT] = bool(values[_IN_DOUBT])  # SQLite's 0/1
    return Item(*values)


_IN_DOUBT = list(Item.__dataclass_fields__).index("in_doubt")
_SELECT_ITEMS = f"SELECT {', '.join(Item.__dataclass_fields__)} FROM {it.name}"


def has_pending(conn: Connection, partition: str) -> bool:
    stmt = sa.select(it.c.res_id).where(it.c.partition == partition, it.c.status == "pending").limit(1)
    return conn.execute(stmt).first() is not None


def waiting_for(conn: Connection, refs: list[str]) -> list[Item]:
    """The items waiting for any of these local references ("Encounter/e1") to be synced."""
    if not refs:
        return []
    sql = f"{_SELECT_ITEMS} WHERE waits_for IN ({', '.join('?' * len(refs))}) AND status = 'waiting'"
    return [_raw_item(row) for row in driver_fetchall(conn, sql, refs)]


def requeue(conn: Connection, items: list[Item], now: int) -> None:
    """Make items pending again (their parent was synced, a Patient got its NIK ...) and due."""
    for item in items:
        update(conn, item, now, status="pending", waits_for=None, last_error=None, queued_us=now)
    claims.want_many(conn, QUEUE, sorted({i.partition for i in items}), now)


def in_partition(conn: Connection, partition: str, statuses: tuple[str, ...]) -> list[Item]:
    rows = conn.execute(sa.select(it).where(it.c.partition == partition, it.c.status.in_(statuses)))
    return [_item(r) for r in rows]


def by_status(conn: Connection, status: str, limit: int = 100, facility: str | None = None) -> list[Item]:
    """Items in ``status`` (of one facility, if given), the longest unchanged first."""
    query = sa.select(it).where(it.c.status == status)
    if facility is not None:
        query = query.where(it.c.facility == facility)
    rows = conn.execute(query.order_by(it.c.updated_us).limit(limit))
    return [_item(r) for r in rows]


def counts(conn: Connection) -> dict[tuple[str, str], int]:
    """(facility, status) -> number of items."""
    rows = conn.execute(sa.select(it.c.facility, it.c.status, sa.func.count()).group_by(it.c.facility, it.c.status))
    return {(f, s): int(n) for f, s, n in rows}


def oldest_pending(conn: Connection) -> Item | None:
    row = conn.execute(sa.select(it).where(it.c.status == "pending").order_by(it.c.queued_us).limit(1)).first()
    return _item(row) if row is not None else None


# -- NIK -> IHS ----------------------------------------------------------------------------


def cached_ihs(conn: Connection, kind: str, nik: str) -> tuple[str | None, int] | None:
    """(IHS number or None for a known miss, when asked) or None when never asked."""
    row = conn.execute(sa.select(si.c.ihs, si.c.checked_us).where(si.c.kind == kind, si.c.nik == nik)).first()
    return (row[0], int(row[1])) if row is not None else None


def remember_ihs(conn: Connection, kind: str, nik: str, ihs: str | None, now: int) -> None:
    stmt = upsert.insert(conn.dialect.name, si).values(kind=kind, nik=nik, ihs=ihs, checked_us=now)
    conn.execute(stmt.on_conflict_do_update(index_elements=["kind", "nik"], set_={"ihs": ihs, "checked_us": now}))


def forget_misses(conn: Connection) -> None:
    """Forget every "SATUSEHAT does not know this NIK" (a retry by hand asks again)."""
    conn.execute(si.delete().where(si.c.ihs.is_(None)))


# -- facilities ----------------------------------------------------------------------------


def facilities(conn: Connection) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in conn.execute(sa.select(sf).order_by(sf.c.name))]


def add_facility(conn: Connection, **values: Any) -> None:
    conn.execute(sf.insert().values(**values))


def remove_facility(conn: Connection, name: str) -> bool:
    return conn.execute(sf.delete().where(sf.c.name == name)).rowcount == 1
