"""Group commit: small independent writes from concurrent requests share one transaction.

On SQLite every write transaction takes the process lock, the cross-process
``flock``, ``BEGIN IMMEDIATE`` and a commit; for a one-resource create those cost
more than the inserts, and an event loop that waited on the ``flock`` while the
other worker wrote served nobody meanwhile. Here the writes an event loop submits
wait (asynchronously) until the write locks are free, and then everything submitted
so far goes into one transaction: one lock, one BEGIN, one executemany per index
table, one COMMIT. On PostgreSQL the same saves a commit (a WAL flush) per write,
and the new resources' rows go in with one COPY.

The transaction runs on the event loop's own thread, on purpose: a writer thread
would fight the loop for the GIL, and SQLite and psycopg release the GIL around
every statement, so each executemany row or round trip could wait a whole GIL
switch interval (5 ms) while the loop validates the next request (measured: an
executemany of 100 rows, 0.29 ms alone, took 92 ms beside one busy thread).

Failures: when a work raises (or the commit fails), the whole batch is rolled back
and every work of it runs again alone, in its own transaction, so each caller gets
exactly its own outcome and one bad write never takes the others down. Works must
therefore be repeatable: they write only through the connection they are given.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from sqlalchemy.engine import Connection

from fhir_server.storage.db import Database
from fhir_server.storage.repository import reserve_pks

T = TypeVar("T")
#: one write: runs inside an open write transaction; what it returns is the caller's result
Work = Callable[[Connection], T]

#: loop iterations a batch waits before it takes the lock, so that the requests read meanwhile
#: join it (one iteration runs the ready tasks, the next reads the sockets, the one after
#: validates what was read): fewer, bigger transactions (measured: create 783-1,012 -> 953-1,117/s,
#: 2 workers, SQLite, 60k resources, three alternating 20 s runs each)
_LINGER_ITERATIONS = 3
#: a background committer's pause between two transactions: a writer of another process woken by
#: the release gets the lock first
_BACKGROUND_PAUSE_SECONDS = 0.001
#: when another process waited for the lock during a background transaction, the pause after it
#: is this many times the time the lock was held: under contention the background process holds
#: SQLite's lock at most a fifth of the time, and its commits (each makes every connection of the
#: server drop its page cache) come less often, a bigger batch each
_BACKGROUND_YIELD = 4.0


class Writes(Protocol):
    """The one write path: ``await writes.run(work)`` runs ``work(conn)`` in a write transaction."""

    async def run(self, work: Work[T], *, new_resources: int = 0, alone: bool = False) -> T: ...


class BlockingWrites:
    """The write path without an event loop (the CLI, migrations, threads): each work runs at
    once in a transaction of its own, blocking until the write lock is free."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def run(self, work: Work[T], *, new_resources: int = 0, alone: bool = False) -> T:
        with self._db.write() as conn:
            if new_resources > 1:
                reserve_pks(conn, new_resources)
            return work(conn)


class GroupCommitter:
    """Runs the works submitted from one event loop in shared write transactions."""

    def __init__(self, db: Database, *, max_batch: int = 256, background: bool = False) -> None:
        """``max_batch``: the most works one transaction takes; ``background``: for a process
        beside the server (the SATUSEHAT sync's): it does not take SQLite's write lock while
        another process waits for it, and pauses after each transaction before taking it again."""
        self._db = db
        self._max_batch = max_batch
        self._background = background
        self._pending: list[tuple[Work[Any], asyncio.Future[Any], int, bool]] = []
        #: a background committer takes the lock again not before this (time.monotonic())
        self._resume_at = 0.0
        self._drainer: asyncio.Task[None] | None = None

    async def run(self, work: Work[T], *, new_resources: int = 0, alone: bool = False) -> T:
        """Run ``work`` in the next group transaction; return its result once committed.

        ``new_resources``: how many new resources it inserts (PostgreSQL reserves the
        batch's keys in one statement). ``alone``: in a transaction of its own, run once
        (for a big write that need not be repeatable, such as a transaction Bundle; it
        still waits for the write lock without blocking the loop).
        """
        loop = asyncio.get_running_loop()
        if self._drainer is not None and self._drainer.get_loop() is not loop:
            # its future would be completed from the other loop's thread, which never wakes this
            # loop: the caller would wait for ever (one committer serves one event loop)
            raise RuntimeError("GroupCommitter: a write from another event loop than the one draining its batches")
        future: asyncio.Future[T] = loop.create_future()
        self._pending.append((work, future, new_resources, alone))
        if self._drainer is None:
            self._drainer = loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                for _ in range(_LINGER_ITERATIONS):
                    await asyncio.sleep(0)
                if (wait := self._resume_at - time.monotonic()) > 0:
                    await asyncio.sleep(wait)
                await self._db.acquire_write_lock(defer_to_others=self._background)
                held_since = time.monotonic()
                try:
                    # everything that arrived while the lock was busy goes in together
                    taken = [item for item in self._pending[: self._max_batch] if not item[1].cancelled()]
                    del self._pending[: self._max_batch]  # a cancelled caller's work is not written
                    shared = [(work, future, n) for work, future, n, alone in taken if not alone]
                    if len(shared) == 1:
                        self._alone(*shared[0])
                    elif shared:
                        self._together(shared)
                    for work, future, n, alone in taken:
                        if alone:
                            self._alone(work, future, n)
                    contended = self._background and self._db.others_waiting_for_write_lock()
                finally:
                    self._db.release_write_lock()
                if self._background:  # kept across drains: work arriving later waits for it too
                    released = time.monotonic()
                    pause = _BACKGROUND_YIELD * (released - held_since) if contended else 0.0
                    self._resume_at = released + max(_BACKGROUND_PAUSE_SECONDS, pause)
        except BaseException as exc:
            # never leave a caller waiting for ever (a failing lock file, a cancelled loop)
            pending, self._pending = self._pending, []
            for _, future, _, _ in pending:
                if future.done():
                    continue
                if isinstance(exc, Exception):
                    future.set_exception(exc)
                else:
                    future.cancel()
            raise
        finally:
            self._drainer = None

    def _together(self, batch: list[tuple[Work[Any], asyncio.Future[Any], int]]) -> None:
        results: list[Any] = []
        try:
            with self._db.write(locked=True) as conn:
                reserve_pks(conn, sum(n for _, _, n in batch))
                for work, _, _ in batch:
                    results.append(work(conn))
        except Exception:  # noqa: BLE001 - rolled back: each work gets its own outcome alone (its error included)
            for item in batch:
                self._alone(*item)
            return
        for (_, future, _), result in zip(batch, results, strict=True):
            if not future.done():  # the caller may have gone (client disconnected)
                future.set_result(result)

    def _alone(self, work: Work[Any], future: asyncio.Future[Any], new_resources: int) -> None:
        try:
            with self._db.write(locked=True) as conn:
                if new_resources > 1:  # one key is no cheaper reserved than returned by its INSERT
                    reserve_pks(conn, new_resources)
                result = work(conn)
        except Exception as exc:  # noqa: BLE001 - not swallowed: the caller gets it from its future
            if not future.done():
                future.set_exception(exc)
        else:
            if not future.done():
                future.set_result(result)
