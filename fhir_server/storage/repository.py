"""Row-level storage operations on an open transaction (a SQLAlchemy Connection).

Nothing here knows HTTP or FHIR semantics beyond versions: the service layer
decides what to write; these functions write it with the database enforcing
the invariants (unique (type, id), version checks in the UPDATE's WHERE).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from fhir_server.storage import deferred
from fhir_server.storage.db import Database
from fhir_server.storage.placeholders import driver_cursor, driver_execute, driver_fetchall, driver_fetchone
from fhir_server.storage.tables import conditional_keys, resource_versions, resources


@dataclass(frozen=True, slots=True)
class CurrentRow:
    pk: int
    version: int
    updated_us: int
    deleted: bool
    body: bytes | None


@dataclass(frozen=True, slots=True)
class VersionRow:
    res_type: str
    res_id: str
    version: int
    updated_us: int
    method: str
    deleted: bool
    body: bytes | None
    pk: int = 0


_READ_CURRENT_SQL = "SELECT pk, version, updated_us, deleted, body FROM resources WHERE res_type = ? AND res_id = ?"


#: conn.info key of the rows ``prefetch_current`` read: (the transaction they belong to, rows)
_PREFETCHED = "fhir_server.prefetched_current"
_PREFETCH_SQL = (
    "SELECT pk, version, updated_us, deleted, body, res_id FROM resources WHERE res_type = %s AND res_id = ANY(%s) ORDER BY pk FOR UPDATE"
)
#: conn.info key of the keys ``prefetch_current`` claimed for creates (a ``_Claims``)
_CLAIMED = "fhir_server.claimed_keys"
# a placeholder row per absent key, in key order: a concurrent creator of the same (type, id)
# waits for this transaction as it would for the create itself; version 0 and deleted keep it
# out of every read until ``insert_current`` fills it in (no read of another transaction sees it)
_CLAIM_SQL = (
    "INSERT INTO resources (res_type, res_id, version, updated_us, deleted, body) "
    "SELECT %s, i, 0, 0, TRUE, NULL FROM unnest(%s::text[]) AS i ORDER BY i "
    "ON CONFLICT (res_type, res_id) DO NOTHING RETURNING pk, res_id"
)
_UNCLAIM_SQL = "DELETE FROM resources WHERE pk = ANY(?) AND version = 0"
_SQLITE_READ_SQL = "SELECT pk, version, updated_us, deleted, body, res_id FROM resources WHERE res_type = ? AND res_id IN ({})"
_SQLITE_TOP_PK_SQL = "SELECT max(pk) FROM resources"


@dataclass(slots=True)
class _Claims:
    """The keys a transaction Bundle's PUTs will create, with the primary key each gets."""

    transaction: Any
    keys: dict[tuple[str, str], int]
    #: PostgreSQL: a placeholder row stands for each key (filled in); SQLite: the number only (inserted)
    placeholders: bool
    #: SQLite: the next number after those the keys took, for any other insert meanwhile
    next_pk: int = 0


@contextmanager
def prefetched_current(conn: Connection, keys: list[tuple[str, str]]) -> Iterator[None]:
    """The current rows of the resources a transaction Bundle's PUTs write, one statement per
    type instead of one per entry; inside, each ``get_current`` of one of them takes its row
    once (a retry reads again: an entry that changed it first, a conditional delete, shows as a
    version conflict and is read anew). The keys that do not exist yet are claimed too: the PUT
    that creates one then queues its row with the transaction's deferred rows
    (``insert_current``) instead of an ``INSERT`` of its own.

    PostgreSQL: the rows are locked, type by type in name order, rows in key order and claims in
    id order, so two Bundles that share resources wait for each other instead of deadlocking. A
    key is claimed by a placeholder row in the same round trip (``_CLAIM_SQL``); a key another
    transaction created meanwhile is not claimed, and its PUT reads it and updates it, as it did
    when its own ``INSERT`` met the other. A claim left unused is removed before the block ends.

    SQLite: the transaction holds the database's only write lock, so an absent key stays absent
    and its claim is a primary key past the largest stored (SQLite's own choice for a new row
    is the largest plus one); another insert meanwhile takes the next number after them. The
    rows are written before the block ends, so a later insert cannot be given a claimed number.

    Only inside a transaction Bundle (all or nothing)."""
    if len(keys) < 2:
        yield
        return
    deferred.flush(conn, parents_only=True)
    by_type: dict[str, list[str]] = {}
    for res_type, res_id in keys:
        by_type.setdefault(res_type, []).append(res_id)
    postgresql = conn.dialect.name == "postgresql"
    rows, claims = _lock_and_claim(conn, by_type) if postgresql else _read_and_number(conn, by_type)
    conn.info[_PREFETCHED] = (claims.transaction, rows)
    conn.info[_CLAIMED] = claims
    try:
        yield
        if postgresql and claims.keys:  # a PUT that did not create (none does without failing the Bundle): no placeholder stays
            deferred.flush(conn, parents_only=True)
            driver_execute(conn, _UNCLAIM_SQL, (list(claims.keys.values()),))
        elif not postgresql:
            deferred.flush(conn, parents_only=True)
    finally:
        conn.info.pop(_PREFETCHED, None)
        conn.info.pop(_CLAIMED, None)


def _lock_and_claim(conn: Connection, by_type: dict[str, list[str]]) -> tuple[dict[tuple[str, str], CurrentRow | None], _Claims]:
    rows: dict[tuple[str, str], CurrentRow | None] = {}
    claimed: dict[tuple[str, str], int] = {}
    with driver_cursor(conn) as cur:

        def lock(res_type: str, ids: list[str]) -> dict[str, CurrentRow]:
            cur.execute(_PREFETCH_SQL, (res_type, ids))
            return {row[5]: _current(row) for row in cur.fetchall()}

        for res_type, ids in sorted(by_type.items()):  # one lock order for every Bundle
            found = lock(res_type, ids)
            absent = [res_id for res_id in ids if res_id not in found]
            if absent:
                cur.execute(_CLAIM_SQL, (res_type, absent))
                claimed.update({(res_type, row[1]): row[0] for row in cur.fetchall()})
                meanwhile = [res_id for res_id in absent if (res_type, res_id) not in claimed]
                if meanwhile:  # created by a transaction the claim waited for: locked now, in key order with the rest
                    found.update(lock(res_type, meanwhile))
            for res_id in ids:
                key = (res_type, res_id)
                if res_id in found or key in claimed:  # otherwise gone again since: get_current reads it
                    rows[key] = found.get(res_id)
    return rows, _Claims(conn.get_transaction(), claimed, placeholders=True)


def _read_and_number(conn: Connection, by_type: dict[str, list[str]]) -> tuple[dict[tuple[str, str], CurrentRow | None], _Claims]:
    rows: dict[tuple[str, str], CurrentRow | None] = {}
    with driver_cursor(conn) as cur:
        for res_type, ids in by_type.items():
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                cur.execute(_SQLITE_READ_SQL.format(", ".join("?" * len(chunk))), (res_type, *chunk))
                rows.update({(res_type, row[5]): _current(row) for row in cur.fetchall()})
        cur.execute(_SQLITE_TOP_PK_SQL)
        top = cur.fetchone()[0] or 0
    claimed: dict[tuple[str, str], int] = {}
    for res_type, ids in by_type.items():
        for res_id in ids:
            key = (res_type, res_id)
            if key not in rows and key not in claimed:
                top += 1
                claimed[key] = top
                rows[key] = None
    return rows, _Claims(conn.get_transaction(), claimed, placeholders=False, next_pk=top + 1)


def _current(row: Sequence[Any]) -> CurrentRow:
    return CurrentRow(row[0], row[1], row[2], bool(row[3]), as_bytes(row[4]))


def get_current(conn: Connection, res_type: str, res_id: str, *, for_update: bool = False) -> CurrentRow | None:
    """The current row inside a write transaction (every update, patch and delete looks it up).

    Straight to the driver: SQLAlchemy's statement machinery was ~60 % of this look-up's cost.
    Only pending ``resources`` rows are written first (storage/deferred.py): the pending version
    and index rows stay batched until the commit instead of going in one resource at a time."""
    prefetched = conn.info.get(_PREFETCHED)
    if prefetched is not None and prefetched[0] is conn.get_transaction() and (res_type, res_id) in prefetched[1]:
        return prefetched[1].pop((res_type, res_id))
    deferred.flush(conn, parents_only=True)
    dialect = conn.dialect.name
    sql = _READ_CURRENT_SQL + (" FOR UPDATE" if for_update and dialect == "postgresql" else "")
    row = driver_fetchone(conn, sql, (res_type, res_id))
    return _current(row) if row else None


_READ_VERSION_SQL = (
    "SELECT res_type, res_id, version, updated_us, method, deleted, body, pk FROM resource_versions "
    "WHERE res_type = ? AND res_id = ? AND version = ?"
)


def read_current(db: Database, res_type: str, res_id: str) -> CurrentRow | None:
    """The current row outside any transaction (the fast path of read by id)."""
    row = db.fetch_one(_READ_CURRENT_SQL, (res_type, res_id))
    return _current(row) if row else None


def read_version(db: Database, res_type: str, res_id: str, version: int) -> VersionRow | None:
    row = db.fetch_one(_READ_VERSION_SQL, (res_type, res_id, version))
    return VersionRow(row[0], row[1], row[2], row[3], row[4], bool(row[5]), as_bytes(row[6]), row[7]) if row else None


def as_bytes(value: Any) -> bytes | None:
    return bytes(value) if value is not None and not isinstance(value, bytes) else value


def get_version(conn: Connection, res_type: str, res_id: str, version: int) -> VersionRow | None:
    c = resource_versions.c
    row = conn.execute(
        sa.select(c.res_type, c.res_id, c.version, c.updated_us, c.method, c.deleted, c.body, c.pk).where(
            c.res_type == res_type, c.res_id == res_id, c.version == version
        )
    ).first()
    return VersionRow(*row) if row else None


def get_versions(conn: Connection, keys: Sequence[tuple[str, str, int]]) -> dict[tuple[str, str, int], VersionRow]:
    """Several versions, one statement per type and 500 ids (those not stored are left out):
    for a worker that reads the version of every change in a batch, where a round trip each
    was most of its time on PostgreSQL. Read by ``res_id IN`` and ``version IN`` (the unique
    index serves both engines), then the pairs not asked for dropped."""
    c = resource_versions.c
    wanted = set(keys)
    by_type: dict[str, list[tuple[str, int]]] = {}
    for res_type, res_id, version in wanted:
        by_type.setdefault(res_type, []).append((res_id, version))
    found: dict[tuple[str, str, int], VersionRow] = {}
    columns = (c.res_type, c.res_id, c.version, c.updated_us, c.method, c.deleted, c.body, c.pk)
    for res_type, pairs in by_type.items():
        for i in range(0, len(pairs), 500):
            chunk = pairs[i : i + 500]
            ids, versions = sorted({p[0] for p in chunk}), sorted({p[1] for p in chunk})
            stmt = sa.select(*columns).where(c.res_type == res_type, c.res_id.in_(ids), c.version.in_(versions))
            for row in conn.execute(stmt):
                key = (row.res_type, row.res_id, row.version)
                if key in wanted:
                    found[key] = VersionRow(*row)
    return found


# The write path runs a handful of statements per resource: they go to the DBAPI
# cursor as plain SQL (inside the SQLAlchemy transaction), which costs a fraction
# of building and compiling Core statements each time. Same SQL on both engines.
_INSERT_CURRENT_SQL = (
    "INSERT INTO resources (res_type, res_id, version, updated_us, deleted, body) VALUES (?, ?, 1, ?, ?, ?) "
    "ON CONFLICT (res_type, res_id) DO NOTHING RETURNING pk"
)
_INSERT_NUMBERED_SQL = (
    "INSERT INTO resources (pk, res_type, res_id, version, updated_us, deleted, body) VALUES (?, ?, ?, 1, ?, ?, ?) "
    "ON CONFLICT (res_type, res_id) DO NOTHING RETURNING pk"
)
_INSERT_VERSION_SQL = (
    "INSERT INTO resource_versions (res_type, res_id, version, updated_us, method, deleted, body) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_REPLACE_CURRENT_SQL = "UPDATE resources SET version = ?, body = ?, updated_us = ?, deleted = ? WHERE pk = ? AND version = ?"


def insert_current(conn: Connection, res_type: str, res_id: str, body: bytes, updated_us: int) -> int | None:
    """Insert version 1 of a new resource; None when (type, id) already exists. A key this
    transaction claimed (``prefetched_current``) is filled in or queued with its deferred rows instead."""
    claims: _Claims | None = conn.info.get(_CLAIMED)
    if claims is not None and claims.transaction is conn.get_transaction():
        pk = claims.keys.pop((res_type, res_id), None)
        if pk is not None:
            if claims.placeholders:
                deferred.fill_claimed(conn, updated_us, body, pk)
            else:
                _queue_new(conn, pk, res_type, res_id, body, updated_us)
            return int(pk)
        if not claims.placeholders:
            # SQLite: not a number a claim took, which SQLite's own choice could be while their rows wait
            row = driver_fetchone(conn, _INSERT_NUMBERED_SQL, (claims.next_pk, res_type, res_id, updated_us, False, body))
            if row is None:
                return None
            claims.next_pk += 1
            return int(row[0])
    row = driver_fetchone(conn, _INSERT_CURRENT_SQL, (res_type, res_id, updated_us, False, body))
    return row[0] if row else None


_VERSION_COLUMNS = ("res_type", "res_id", "version", "updated_us", "method", "deleted", "body")
_NEW_COLUMNS = ("pk", "res_type", "res_id", "version", "updated_us", "deleted", "body")
_INSERT_NEW_SQL = f"INSERT INTO resources ({', '.join(_NEW_COLUMNS)}) VALUES ({', '.join('?' * len(_NEW_COLUMNS))})"
_RESERVE_PKS_SQL = "SELECT nextval(pg_get_serial_sequence('resources', 'pk')) FROM generate_series(1, ?)"


def reserve_pks(conn: Connection, count: int) -> None:
    """PostgreSQL: take ``count`` primary keys for the new resources of this write transaction.

    ``insert_new`` then queues those rows with the transaction's deferred rows instead of
    a round trip each (a key left unused is a harmless gap in the sequence). No-op on
    SQLite (no round trips to save) and outside ``Database.write``.
    """
    batch = deferred.pending(conn)
    if batch is None or conn.dialect.name != "postgresql" or count <= 0:
        return
    batch.reserved_pks.extend(row[0] for row in driver_fetchall(conn, _RESERVE_PKS_SQL, (count,)))


def insert_new(conn: Connection, res_type: str, res_id: str, body: bytes, updated_us: int) -> int | None:
    """Insert version 1 of a resource with a fresh server-assigned id.

    With a reserved key the row joins the deferred rows (written before anything reads
    the table). A fresh uuid4 id cannot collide, so no ON CONFLICT is needed there;
    otherwise this is ``insert_current``.
    """
    batch = deferred.pending(conn)
    if batch is not None and batch.reserved_pks:
        pk = batch.reserved_pks.pop()
        _queue_new(conn, pk, res_type, res_id, body, updated_us)
        return pk
    return insert_current(conn, res_type, res_id, body, updated_us)


def _queue_new(conn: Connection, pk: int, res_type: str, res_id: str, body: bytes, updated_us: int) -> None:
    """Version 1 of a new resource whose primary key is known: with the deferred rows (written
    before anything reads the table), or now when the connection does not defer."""
    row = (pk, res_type, res_id, 1, updated_us, False, body)
    batch = deferred.pending(conn)
    if batch is not None:
        batch.add("resources", _NEW_COLUMNS, [row], parent=True)
    else:
        driver_execute(conn, _INSERT_NEW_SQL, row)


def replace_current(conn: Connection, pk: int, expected_version: int, body: bytes | None, updated_us: int, *, deleted: bool) -> bool:
    """Move a resource to ``expected_version + 1``; False if someone else got there first."""
    deferred.flush(conn)  # the row may have been created earlier in this transaction
    changed = driver_execute(conn, _REPLACE_CURRENT_SQL, (expected_version + 1, body, updated_us, deleted, pk, expected_version)) == 1
    return changed


def add_version(
    conn: Connection,
    res_type: str,
    res_id: str,
    version: int,
    updated_us: int,
    method: str,
    body: bytes | None,
    *,
    deleted: bool = False,
) -> None:
    params = (res_type, res_id, version, updated_us, method, deleted, body)
    batch = deferred.pending(conn)
    if batch is not None:  # written with the transaction's other version rows (storage/deferred.py)
        batch.add("resource_versions", _VERSION_COLUMNS, [params])
    else:
        driver_execute(conn, _INSERT_VERSION_SQL, params)


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    res_type: str | None = None
    res_id: str | None = None
    since_us: int | None = None
    #: ``_at``: keep versions current at some point in [lo, hi]
    at_range: tuple[int, int] | None = None
    #: keyset cursor: strictly older than (updated_us, pk)
    before: tuple[int, int] | None = None
    count: int = 50


def history(conn: Connection, q: HistoryQuery) -> Sequence[VersionRow]:
    """Versions newest first, at most ``q.count + 1`` (the extra row tells there is a next page)."""
    c = resource_versions.c
    conds = []
    if q.res_type is not None:
        conds.append(c.res_type == q.res_type)
    if q.res_id is not None:
        conds.append(c.res_id == q.res_id)
    if q.since_us is not None:
        conds.append(c.updated_us >= q.since_us)
    if q.before is not None:
        conds.append(sa.tuple_(c.updated_us, c.pk) < sa.tuple_(*q.before))
    if q.at_range is not None:
        lo, hi = q.at_range
        nxt = resource_versions.alias("nxt")
        next_updated = (
            sa.select(nxt.c.updated_us)
            .where(nxt.c.res_type == c.res_type, nxt.c.res_id == c.res_id, nxt.c.version == c.version + 1)
            .scalar_subquery()
        )
        conds.append(c.updated_us <= hi)
        conds.append(sa.or_(next_updated.is_(None), next_updated > lo))
    stmt = (
        sa.select(c.res_type, c.res_id, c.version, c.updated_us, c.method, c.deleted, c.body, c.pk)
        .where(*conds)
        .order_by(c.updated_us.desc(), c.pk.desc())
        .limit(q.count + 1)
    )
    return [VersionRow(*r) for r in conn.execute(stmt)]


def count_history(conn: Connection, res_type: str | None, res_id: str | None) -> int:
    c = resource_versions.c
    conds = []
    if res_type is not None:
        conds.append(c.res_type == res_type)
    if res_id is not None:
        conds.append(c.res_id == res_id)
    return conn.execute(sa.select(sa.func.count()).select_from(resource_versions).where(*conds)).scalar_one()


_CLAIM_KEY = {
    name: dialect.insert(conditional_keys).on_conflict_do_nothing(index_elements=["key"]).returning(conditional_keys.c.key)
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}


def claim_conditional_key(conn: Connection, key: str, res_type: str) -> bool:
    """Take the create-guard for ``key``; False when another transaction holds it.

    On PostgreSQL a concurrent holder makes this wait until that transaction
    ends, so a False answer means the other resource is committed and visible
    to the next statement.
    """
    row = conn.execute(_CLAIM_KEY[conn.dialect.name], {"key": key, "res_type": res_type, "resource_pk": None}).first()
    return row is not None


def bind_conditional_key(conn: Connection, key: str, resource_pk: int) -> None:
    conn.execute(sa.update(conditional_keys).where(conditional_keys.c.key == key).values(resource_pk=resource_pk))


def release_conditional_key(conn: Connection, key: str) -> None:
    """Drop a guard whose resource no longer matches its condition."""
    conn.execute(sa.delete(conditional_keys).where(conditional_keys.c.key == key))


def overwrite_body(conn: Connection, pk: int, res_type: str, res_id: str, version: int, body: bytes) -> None:
    """Rewrite the body of the current version in place (``$meta-add``/``$meta-delete`` keep the version)."""
    conn.execute(sa.update(resources).where(resources.c.pk == pk, resources.c.version == version).values(body=body))
    c = resource_versions.c
    conn.execute(sa.update(resource_versions).where(c.res_type == res_type, c.res_id == res_id, c.version == version).values(body=body))
