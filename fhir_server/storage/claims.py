"""Claiming work through the database: change-log cursors and partition leases (generic).

For every consumer that follows the change log (docs/changelog.md) and must neither lose nor
double a piece of work: subscription delivery today, the SATUSEHAT sync next. Two pieces:

* **A cursor per consumer** (``change_cursors``): the ``change_log.seq`` up to which the consumer
  has turned changes into work of its own. One worker at a time holds it (a lease); the position
  moves only by compare-and-set (:func:`advance_cursor`) inside the transaction that stores the
  work derived from those changes. A worker that lost its lease, or died half-way, cannot move
  it, so every change is turned into work exactly once, in commit order, across restarts and
  machines.
* **Partitions** (``work_partitions``): the unit a worker claims to carry work out (one
  subscription, one patient ...). Work of one partition is done in order by one worker at a
  time; different partitions run in parallel on any number of workers. A partition carries
  ``wanted_us`` (work waits since; cleared when claimed, set again by :func:`want`), its back-off
  after failures (``retry_at_us``, ``failures``) and ``paused``. The consumer keeps the work
  items themselves in its own tables (subscriptions: ``subscription_events``).

Claiming is one transaction: PostgreSQL selects due partitions ``FOR UPDATE SKIP LOCKED`` (two
workers never wait on, nor both take, the same row) and leases them; SQLite renders no ``FOR
UPDATE`` but runs the same statements in its single writer's ``BEGIN IMMEDIATE`` transaction,
which serialises claims. Every later write of the holder (:func:`renew`, :func:`done`,
:func:`failed`) requires ``lease_owner = me`` and an unexpired lease, so a worker that stalled
past its lease learns it and stops; its partition went to another worker meanwhile.

All functions take the caller's open write connection (the caller's transaction: the one
write path, ``Pipeline.writer`` / group commit, or ``Database.write``) and commit nothing.
"""

from __future__ import annotations

import os
import random
import socket
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from fhir_server.storage import upsert
from fhir_server.storage.placeholders import driver_execute, driver_executemany
from fhir_server.storage.work_tables import change_cursors as cc
from fhir_server.storage.work_tables import work_partitions as wp


class LostLease(RuntimeError):
    """The caller's lease ran out or was taken over: its transaction must roll back."""


def worker_owner() -> str:
    """A background worker's lease owner: host, process and a random part (unique across the
    machines sharing the database, and across restarts of one process id)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def backoff_seconds(failures: int, base: float, cap: float) -> float:
    """How long a partition waits after ``failures`` failures in a row: exponential up to ``cap``,
    with jitter (between half and all of it), so endpoints coming back are not hit by every
    waiting retry at once."""
    return min(cap, base * 2 ** min(failures, 30)) * (0.5 + random.random() / 2)


# -- cursors -------------------------------------------------------------------------------


def lease_cursor(conn: Connection, consumer: str, owner: str, lease_us: int, now: int, start: int = 0) -> int | None:
    """Take (or renew) the lease on ``consumer``'s cursor; its position, or None when another
    worker holds it. A new consumer starts at ``start`` (0: the whole log; ``last_seq``: now)."""
    conn.execute(
        upsert.insert(conn.dialect.name, cc)
        .values(consumer=consumer, position=start, updated_us=now)
        .on_conflict_do_nothing(index_elements=["consumer"])
    )
    free = sa.or_(cc.c.lease_owner.is_(None), cc.c.lease_owner == owner, cc.c.lease_until_us < now)
    taken = conn.execute(
        cc.update().where(cc.c.consumer == consumer, free).values(lease_owner=owner, lease_until_us=now + lease_us, updated_us=now)
    ).rowcount
    if taken != 1:
        return None
    return int(conn.execute(sa.select(cc.c.position).where(cc.c.consumer == consumer)).scalar_one())


def advance_cursor(conn: Connection, consumer: str, owner: str, old: int, new: int, now: int) -> None:
    """Move the cursor from ``old`` to ``new``; :class:`LostLease` (roll back!) unless the caller
    still holds the lease and the position is still ``old``."""
    if driver_execute(conn, _ADVANCE_SQL, (new, now, consumer, old, owner, now)) != 1:
        raise LostLease(f"the cursor of {consumer!r} is no longer held by {owner!r} at {old}")


# straight to the driver: a background worker runs it with every chunk of changes it turns into
# work, inside SQLite's write lock, where SQLAlchemy's statement machinery cost more than running it
_ADVANCE_SQL = (
    f"UPDATE {cc.name} SET position = ?, updated_us = ? WHERE consumer = ? AND position = ? AND lease_owner = ? AND lease_until_us >= ?"
)


def move_cursor(conn: Connection, consumer: str, owner: str, lease_us: int, now: int, old: int, new: int) -> bool:
    """Take (or renew) the lease on ``consumer``'s cursor and move it from ``old`` to ``new``, in one
    statement; False, and nothing changed, when another worker holds the lease or the cursor is no
    longer at ``old`` (the caller's work is stale: roll back what it wrote)."""
    free = sa.or_(cc.c.lease_owner.is_(None), cc.c.lease_owner == owner, cc.c.lease_until_us < now)
    moved = conn.execute(
        cc.update()
        .where(cc.c.consumer == consumer, cc.c.position == old, free)
        .values(position=new, lease_owner=owner, lease_until_us=now + lease_us, updated_us=now)
    ).rowcount
    return moved == 1


def release_cursor(conn: Connection, consumer: str, owner: str) -> None:
    conn.execute(cc.update().where(cc.c.consumer == consumer, cc.c.lease_owner == owner).values(lease_owner=None, lease_until_us=None))


def cursor_position(conn: Connection, consumer: str) -> int | None:
    return conn.execute(sa.select(cc.c.position).where(cc.c.consumer == consumer)).scalar_one_or_none()


def cursor_state(conn: Connection, consumer: str) -> tuple[int, str | None, int | None] | None:
    """(position, lease owner, lease end) of ``consumer``'s cursor; None before its first lease."""
    row = conn.execute(sa.select(cc.c.position, cc.c.lease_owner, cc.c.lease_until_us).where(cc.c.consumer == consumer)).first()
    return (int(row[0]), row[1], row[2]) if row is not None else None


def slowest_cursor(conn: Connection) -> tuple[str, int] | None:
    """(consumer, position) of the consumer furthest behind in the change log; None without any."""
    row = conn.execute(sa.select(cc.c.consumer, cc.c.position).order_by(cc.c.position, cc.c.consumer).limit(1)).first()
    return (row[0], int(row[1])) if row is not None else None


def set_cursor(conn: Connection, consumer: str, position: int, now: int) -> None:
    """Operators only (replay): put the cursor at ``position`` whoever holds it."""
    conn.execute(
        upsert.insert(conn.dialect.name, cc)
        .values(consumer=consumer, position=position, updated_us=now)
        .on_conflict_do_update(index_elements=["consumer"], set_={"position": position, "updated_us": now})
    )


# -- partitions ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Claim:
    queue: str
    partition: str
    #: consecutive failures before this claim (0: the last attempt succeeded)
    failures: int
    #: when the lease runs out (µs; None: unknown). A holder must not start work it cannot
    #: finish before then: renew first (another worker may claim the partition after it)
    until_us: int | None = None


def _earliest(column: Any, value: Any) -> Any:
    """SQL for min(column, value), NULL meaning "never"."""
    if value is None:
        return column
    return sa.case((column.is_(None), value), (column < value, column), else_=value)


def want(conn: Connection, queue: str, partition: str, at_us: int) -> None:
    """Work waits in ``partition`` from ``at_us`` on (creates the partition). A partition that is
    leased, backing off or paused keeps that; the work is done once it is claimed again."""
    want_many(conn, queue, (partition,), at_us)


def _earliest_wanted(column: str, value: str) -> str:
    """SQL text of :func:`_earliest` for the statements sent straight to the driver (``value``
    appears twice: a ``?`` is bound twice)."""
    return f"CASE WHEN {column} IS NULL OR {column} > {value} THEN {value} ELSE {column} END"


def want_many(conn: Connection, queue: str, partitions: Iterable[str], at_us: int) -> None:
    """:func:`want` for several partitions in one executemany."""
    driver_executemany(conn, _WANT_SQL, [(queue, p, at_us) for p in partitions])


# straight to the driver: the background workers run it for every item they note, often inside
# SQLite's write lock, where SQLAlchemy's statement machinery cost more than running it.
# wanted_us: the earlier of the two (NULL: not wanted), as :func:`_earliest`
_WANT_SQL = (
    f"INSERT INTO {wp.name} (queue, partition, wanted_us, failures, paused) VALUES (?, ?, ?, 0, FALSE)"
    f" ON CONFLICT (queue, partition) DO UPDATE SET wanted_us = {_earliest_wanted(f'{wp.name}.wanted_us', 'excluded.wanted_us')}"
)


def set_paused(conn: Connection, queue: str, partition: str, paused: bool, *, wanted_us: int | None = None) -> None:
    """Pause (never claimed) or resume a partition; resuming clears its back-off."""
    values: dict[str, Any] = {"paused": paused}
    if not paused:
        values.update(failures=0, retry_at_us=None, last_error=None, wanted_us=_earliest(wp.c.wanted_us, wanted_us))
    stmt = upsert.insert(conn.dialect.name, wp).values(queue=queue, partition=partition, wanted_us=wanted_us, failures=0, paused=paused)
    conn.execute(stmt.on_conflict_do_update(index_elements=["queue", "partition"], set_=values))


def drop(conn: Connection, queue: str, partition: str) -> None:
    conn.execute(wp.delete().where(wp.c.queue == queue, wp.c.partition == partition))


def claimable(queue: str, now: int) -> Any:
    """SQL: a partition of ``queue`` that is due and free at ``now``."""
    return sa.and_(
        wp.c.queue == queue,
        wp.c.paused.is_(False),
        wp.c.wanted_us <= now,
        sa.or_(wp.c.retry_at_us.is_(None), wp.c.retry_at_us <= now),
        sa.or_(wp.c.lease_until_us.is_(None), wp.c.lease_until_us < now),
    )


def claim(
    conn: Connection, queue: str, owner: str, lease_us: int, now: int, limit: int = 10, *, only: list[str] | None = None
) -> list[Claim]:
    """Lease up to ``limit`` due partitions of ``queue`` to ``owner``, longest waiting first
    (``only``: among these partitions, e.g. those whose websocket this process holds)."""
    stmt = sa.select(wp.c.partition, wp.c.failures).where(claimable(queue, now)).order_by(wp.c.wanted_us).limit(limit)
    if only is not None:
        stmt = stmt.where(wp.c.partition.in_(only))
    rows = list(conn.execute(stmt.with_for_update(skip_locked=True)))
    claims = []
    for partition, failures in rows:
        # the WHERE re-checks the lease: on PostgreSQL the row is ours (locked), on SQLite the writer is alone
        taken = conn.execute(
            wp.update()
            .where(wp.c.partition == partition, claimable(queue, now))
            .values(lease_owner=owner, lease_until_us=now + lease_us, wanted_us=None)
        ).rowcount
        if taken == 1:
            claims.append(Claim(queue, partition, failures, now + lease_us))
    return claims


def claim_one(conn: Connection, queue: str, partition: str, owner: str, lease_us: int, now: int) -> Claim | None:
    """Lease one partition if it is due and free (one statement: the work that made it due is
    in the same transaction, e.g. the matcher's new events)."""
    row = conn.execute(
        wp.update()
        .where(wp.c.queue == queue, wp.c.partition == partition, claimable(queue, now))
        .values(lease_owner=owner, lease_until_us=now + lease_us, wanted_us=None)
        .returning(wp.c.failures)
    ).first()
    return Claim(queue, partition, int(row[0]), now + lease_us) if row is not None else None


def _mine(queue: str, partition: str, owner: str, now: int) -> Any:
    return sa.and_(wp.c.queue == queue, wp.c.partition == partition, wp.c.lease_owner == owner, wp.c.lease_until_us >= now)


def renew(conn: Connection, queue: str, partition: str, owner: str, lease_us: int, now: int) -> bool:
    """Extend the lease; False when it is no longer the caller's (stop working on it)."""
    return driver_execute(conn, _RENEW_SQL, (now + lease_us, queue, partition, owner, now)) == 1


# straight to the driver: a worker renews with every outcome it writes, inside SQLite's write lock
_RENEW_SQL = f"UPDATE {wp.name} SET lease_until_us = ? WHERE queue = ? AND partition = ? AND lease_owner = ? AND lease_until_us >= ?"


def next_due_us(conn: Connection, queues: list[str], now: int) -> int | None:
    """The earliest time after ``now`` at which a partition of ``queues`` may become claimable (or
    :func:`abandoned`) without anyone writing: a wanted time or a back-off in the future, a lease
    running out. None: nothing is scheduled (only a write makes work due). For an idle worker,
    so that it sleeps until then instead of polling."""
    c = wp.c
    row = conn.execute(
        sa.select(
            sa.func.min(sa.case((c.wanted_us > now, c.wanted_us))),
            sa.func.min(sa.case((c.retry_at_us > now, c.retry_at_us))),
            sa.func.min(sa.case((c.lease_until_us >= now, c.lease_until_us + 1))),
        ).where(c.queue.in_(queues), c.paused.is_(False))
    ).one()
    found = [int(v) for v in row if v is not None]
    return min(found) if found else None


def holds(conn: Connection, queue: str, partition: str, owner: str, now: int) -> bool:
    return conn.execute(sa.select(wp.c.partition).where(_mine(queue, partition, owner, now))).first() is not None


def done(conn: Connection, queue: str, partition: str, owner: str, now: int, *, next_us: int | None = None) -> bool:
    """The claimed work succeeded: failures reset, lease dropped; ``next_us``: when the partition
    wants a worker again (more work now, a heartbeat later; None: only when :func:`want` says)."""
    mine = (queue, partition, owner, now)
    if next_us is None:
        return driver_execute(conn, _DONE_SQL.format(wanted=""), mine) == 1
    return driver_execute(conn, _DONE_SQL.format(wanted=_EARLIEST_WANTED), (next_us, next_us, *mine)) == 1


# straight to the driver, as :func:`renew`; ``wanted``: "" or the earlier of ``wanted_us`` and a time
_DONE_SQL = (
    f"UPDATE {wp.name} SET lease_owner = NULL, lease_until_us = NULL, failures = 0, retry_at_us = NULL, last_error = NULL"
    "{wanted} WHERE queue = ? AND partition = ? AND lease_owner = ? AND lease_until_us >= ?"
)
_EARLIEST_WANTED = f", wanted_us = {_earliest_wanted('wanted_us', '?')}"


def failed(conn: Connection, queue: str, partition: str, owner: str, now: int, *, retry_at_us: int, error: str) -> int | None:
    """The claimed work failed: back off until ``retry_at_us``; the failure count so far, or None
    when the lease was no longer the caller's."""
    changed = conn.execute(
        wp.update()
        .where(_mine(queue, partition, owner, now))
        .values(
            lease_owner=None,
            lease_until_us=None,
            failures=wp.c.failures + 1,
            retry_at_us=retry_at_us,
            last_error=error[:2000],
            wanted_us=_earliest(wp.c.wanted_us, now),
        )
    ).rowcount
    if changed != 1:
        return None
    return int(conn.execute(sa.select(wp.c.failures).where(wp.c.queue == queue, wp.c.partition == partition)).scalar_one())


def release(conn: Connection, queue: str, partition: str, owner: str, now: int) -> None:
    """Give a claimed partition back untouched (the worker is stopping): due again at once."""
    conn.execute(
        wp.update()
        .where(wp.c.queue == queue, wp.c.partition == partition, wp.c.lease_owner == owner)
        .values(lease_owner=None, lease_until_us=None, wanted_us=_earliest(wp.c.wanted_us, now))
    )


def partition_state(conn: Connection, queue: str, partition: str) -> dict[str, Any] | None:
    row = conn.execute(sa.select(wp).where(wp.c.queue == queue, wp.c.partition == partition)).first()
    return dict(row._mapping) if row is not None else None


def abandoned(queue: str, now: int) -> Any:
    """SQL: a partition of ``queue`` whose holder's lease ran out without a word (the worker was
    killed or lost the database): claiming cleared its ``wanted_us``, so it is due only once
    :func:`revive` says so."""
    return sa.and_(wp.c.queue == queue, wp.c.wanted_us.is_(None), wp.c.lease_owner.is_not(None), wp.c.lease_until_us < now)


def revive(conn: Connection, queue: str, now: int) -> int:
    """Make the :func:`abandoned` partitions of ``queue`` due again; how many there were."""
    return conn.execute(wp.update().where(abandoned(queue, now)).values(wanted_us=now, lease_owner=None, lease_until_us=None)).rowcount
