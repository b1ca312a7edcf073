"""Recording audit events without slowing requests down.

Two ways to write an event, pick by interaction:

``AuditRecorder.record(event)`` - **reads, searches, history, operations that
do not write, and every failed request** (including failed writes, whose
transaction was rolled back). It only appends to an in-memory queue (a
``collections.deque``: thread-safe and O(1) under the GIL, no I/O, no lock,
about a microsecond). One flusher, a task on the server's event loop
(:meth:`AuditRecorder.run_on_loop`), writes the queue every ``flush_interval``
seconds (sooner when ``max_batch`` events are waiting) with one bulk INSERT per
batch (see :mod:`.bulk_insert`), through the loop's group commit like every other
write. Outside a server (scripts, tests) :meth:`AuditRecorder.flush` writes the
queue in the caller's thread. The price: events of the last ``flush_interval``
seconds are lost if the process is killed hard (SIGKILL, power loss); a clean
shutdown (``close()``) writes them.

``record_in(conn, event)`` - **successful writes** (create, update, patch,
delete, transaction, batch, writing operations): the event is INSERTed in the
request's own transaction, so it commits or rolls back together with the write
(an audited write can never be missing from the trail, and a rolled-back write
leaves no "success" event). If the transaction then fails, record the failure
with ``record()``.

When the database is unreachable the recorder keeps at most ``max_queue``
queued events plus the one batch it is retrying (with back-off up to
``MAX_BACKOFF`` seconds); further events are dropped and counted in
``dropped``. ``record()`` never blocks and never raises for a database
problem; nothing here crashes the server.

Create one recorder per process, after the server forks its workers (in the
application's start-up); a fork of a process with a recorder gets a fresh, empty
queue of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from fhir_server.storage import deferred
from fhir_server.storage.db import Database
from fhir_server.storage.group_commit import Writes

from .bulk_insert import insert_one, insert_rows
from .events import LAYOUTS, AuditRecord, to_tuple
from .request_rows import RawRequest, request_row

log = logging.getLogger("fhir_server.audit")

#: the longest pause between two attempts while the database is down
MAX_BACKOFF = 5.0
#: what turning a malformed event into a row raises
_UNSTORABLE = (ValueError, TypeError, AttributeError, KeyError, IndexError)


def record_in(conn: Connection, event: AuditRecord) -> None:
    """Write ``event`` inside the caller's open transaction (commits and rolls back with it).

    Inside ``Database.write`` the row joins the transaction's deferred rows (one executemany or
    COPY per batch of writes at commit, like the version and index rows: an INSERT of its own
    per write cost creates ~25 %); on a bare connection it is inserted now. Raises ValueError
    for an unknown interaction, and whatever the database raises (which fails the caller's
    transaction, as it should).
    """
    row = to_tuple(event)
    batch = deferred.pending(conn)
    if batch is not None:
        batch.add("audit_events", LAYOUTS[len(row)], [row])
    else:
        insert_one(conn, row)


class AuditRecorder:
    """Buffers audit events in memory; the event-loop flusher (or ``flush``) writes them in batches."""

    record_in = staticmethod(record_in)

    def __init__(
        self,
        engine_or_database: Engine | Database,
        *,
        flush_interval: float = 0.2,
        max_batch: int = 1000,
        max_queue: int = 100_000,
    ) -> None:
        if isinstance(engine_or_database, Engine):
            # a Database of its own: on SQLite pass the application's Database
            # instead, so audit flushes share its writer lock
            self.db = Database(engine_or_database)
        else:
            self.db = engine_or_database  # a Database (or anything with its write())
        self.flush_interval = flush_interval
        self.max_batch = max(1, max_batch)
        self.max_queue = max(1, max_queue)
        self._limit = self.max_queue  # 0 once closed: record() then drops
        self._queue: deque[AuditRecord | RawRequest] = deque()
        self._retry: list[tuple[Any, ...]] = []
        self._dropped = 0
        self.written = 0
        self.last_error: BaseException | None = None
        self._failing = False
        self._init_sync()
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _after_fork_of(ref))

    def _init_sync(self) -> None:
        #: tells the event-loop flusher that a full batch is waiting (set by ``run_on_loop``)
        self._wake_flusher: Callable[[], object] = _nothing
        self._flush_lock = threading.Lock()
        self._count_lock = threading.Lock()

    # ------------------------------------------------------------------ request path

    def record(self, event: AuditRecord | RawRequest) -> None:
        """Queue ``event`` for the next flush: no I/O, never blocks, never raises.

        ``event`` is an :class:`AuditRecord` or, from the HTTP middleware, the
        raw tuple of a request (``request_rows.RawRequest``: turned into a row
        by the flusher, off the request path)."""
        queue = self._queue
        if len(queue) >= self._limit:
            with self._count_lock:
                self._dropped += 1
            return
        queue.append(event)
        if len(queue) == self.max_batch:
            self._wake_flusher()

    # ------------------------------------------------------------------ state

    @property
    def dropped(self) -> int:
        """Events lost: the queue was full (database down for long) or a row could not be stored."""
        return self._dropped

    @property
    def pending(self) -> int:
        """Events recorded but not written yet."""
        return len(self._queue) + len(self._retry)

    # ------------------------------------------------------------------ flushing

    def flush(self) -> int:
        """Write everything queued now, in the caller's thread; the number of events written.

        Never raises for a database problem: the events stay queued (see
        ``last_error`` and ``pending``) for the next flush.
        """
        before = self.written
        self._flush()
        return self.written - before

    def _flush(self) -> bool:
        with self._flush_lock:
            while True:
                if not self._retry:
                    self._retry = self._take()
                    if not self._retry:
                        return True
                # _write writes what it can and leaves the rest in self._retry
                if not self._write(self._retry):
                    return False

    def _take(self) -> list[tuple[Any, ...]]:
        queue = self._queue
        events = [queue.popleft() for _ in range(min(len(queue), self.max_batch))]  # only this thread pops
        try:  # one comprehension for the batch: no per-event try or call of our own
            return [request_row(e) if isinstance(e, tuple) else to_tuple(e) for e in events]
        except _UNSTORABLE:
            pass
        rows: list[tuple[Any, ...]] = []
        for event in events:  # some event cannot be stored: convert one by one, drop the bad ones
            try:
                rows.append(request_row(event) if isinstance(event, tuple) else to_tuple(event))
            except _UNSTORABLE as exc:
                log.error("audit: dropping an event that cannot be stored: %s", exc)
                with self._count_lock:
                    self._dropped += 1
        return rows

    def _bad_row(self, exc: BaseException) -> bool:
        """Whether ``exc`` is a refused row (constraint, data) rather than an outage."""
        if isinstance(exc, (sa.exc.IntegrityError, sa.exc.DataError, ValueError, TypeError)):
            return True  # ValueError includes UnicodeError
        dbapi = getattr(getattr(getattr(self.db, "engine", None), "dialect", None), "loaded_dbapi", None)
        return dbapi is not None and isinstance(exc, (dbapi.IntegrityError, dbapi.DataError))

    def _write(self, rows: list[tuple[Any, ...]]) -> bool:
        """Write ``rows`` (one bulk INSERT in a transaction of its own).

        True when they are all written or dropped as unstorable; False when
        the database failed, with the unwritten rows left in ``self._retry``.
        """
        try:
            with self.db.write() as conn:
                insert_rows(conn, rows)
        except Exception as exc:  # noqa: BLE001 - database down, disk full, ...
            return self._failed(rows, exc)
        self._retry = []
        return self._written(rows)

    def _written(self, rows: list[tuple[Any, ...]]) -> bool:
        self.written += len(rows)
        if self._failing:
            log.warning("audit: database reachable again; %d events dropped so far", self._dropped)
            self._failing = False
        return True

    def _failed(self, rows: list[tuple[Any, ...]], exc: Exception) -> bool:
        if self._bad_row(exc):
            # a refused row (not an outage): write the rows one by one, drop the bad ones
            log.error("audit: a batch was refused (%s); writing its rows one by one", exc)
            return self._write_one_by_one(rows)
        if self._retry is not rows:  # a batch the loop had taken out: back to the head of the line
            self._retry = rows + self._retry
        self._outage(exc)
        return False

    # ------------------------------------------------------------------ flushing from an event loop

    async def run_on_loop(self, writes: Writes) -> None:
        """The flusher: a task of the server's event loop.

        Not a thread on purpose: a flusher thread fights the event loop for the GIL (SQLite
        and psycopg release it around every statement, and each time the loop thread wants
        it back it can wait a whole switch interval while the flusher turns events into
        rows). Here the rows are made and written on the loop's thread, between requests,
        and the INSERT joins the loop's group commit (storage/group_commit.py) instead of
        queueing for the write lock. Cancel the task, then ``close()``, to stop.
        """
        loop = asyncio.get_running_loop()
        full = asyncio.Event()
        # record() may run on another thread (scripts, the export worker): wake the loop safely
        self._wake_flusher = lambda: loop.call_soon_threadsafe(full.set)
        delay = self.flush_interval
        while True:
            if len(self._queue) < self.max_batch:  # a full batch goes at once
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow the task's
                # cancellation (CPython gh-86296), and whoever awaits the cancelled task waits forever
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await full.wait()
            full.clear()
            try:
                ok = await self._flush_batch_on_loop(writes)
            except Exception as exc:  # the flusher must survive anything (logged)
                log.exception("audit flusher: unexpected error")
                self.last_error = exc
                ok = False
            delay = self.flush_interval if ok else min(max(delay, 0.05) * 2, MAX_BACKOFF)

    async def _flush_batch_on_loop(self, writes: Writes) -> bool:
        """Write one batch: the one being retried, or up to ``max_batch`` queued events.

        One batch per wake-up, not "until the queue is empty": under load, events keep
        arriving while a batch waits for the write lock, and draining them at once
        turned every flush into a string of transactions of a few dozen events each,
        whose BEGIN/COMMIT cost as much as the inserts (py-spy, reads by id).
        """
        with self._flush_lock:  # the batch is taken out: a flush() in another thread cannot take it too
            rows = self._retry or self._take()
            self._retry = []
        if not rows:
            return True
        write = asyncio.ensure_future(writes.run(lambda conn: insert_rows(conn, rows)))
        try:
            await asyncio.shield(write)
        except asyncio.CancelledError:
            # stopping (shutdown): the write in flight may commit anyway, so wait for its end and
            # count its rows written or keep them for close(), never both (they were written twice)
            try:
                await write
            except Exception:  # noqa: BLE001 - not written: close() tries again
                self._retry = rows + self._retry
            else:
                self._written(rows)
            raise
        except Exception as exc:  # noqa: BLE001 - database down, disk full, ...
            return self._failed(rows, exc)
        return self._written(rows)

    def _outage(self, exc: BaseException) -> None:
        self.last_error = exc
        if not self._failing:
            log.error("audit: cannot write to the database, keeping events in memory: %s", exc)
            self._failing = True

    def _write_one_by_one(self, rows: list[tuple[Any, ...]]) -> bool:
        for i, row in enumerate(rows):
            try:
                with self.db.write() as conn:
                    insert_one(conn, row)
                self.written += 1
            except Exception as exc:  # noqa: BLE001
                if not self._bad_row(exc):
                    self._retry = rows[i:] + (self._retry if self._retry is not rows else [])
                    self._outage(exc)
                    return False
                with self._count_lock:
                    self._dropped += 1
        if self._retry is rows:
            self._retry = []
        return True

    # ------------------------------------------------------------------ shutdown

    def close(self) -> None:
        """Write what is queued (at shutdown, after cancelling the flusher task). Idempotent.

        Events recorded after ``close()`` are dropped (counted), and so are the events the
        final flush could not write (database down).
        """
        self._limit = 0
        self.flush()
        lost = self.pending
        if lost:
            with self._count_lock:
                self._dropped += lost
            self._queue.clear()
            self._retry = []
            log.error("audit: %d events could not be written at shutdown", lost)

    def _after_fork(self) -> None:
        # the child writes its own events; the parent's queue is the parent's
        self._init_sync()
        self._queue = deque()
        self._retry = []


def _nothing() -> None:
    return None


def _after_fork_of(ref: weakref.ref[AuditRecorder]) -> None:
    recorder = ref()
    if recorder is not None:
        recorder._after_fork()


class NullRecorder:
    """The recorder when auditing is switched off: records nothing."""

    dropped = 0
    pending = 0
    written = 0
    record_in = staticmethod(lambda conn, event: None)

    def record(self, event: AuditRecord) -> None:
        pass

    def flush(self) -> int:
        return 0

    def close(self) -> None:
        pass
