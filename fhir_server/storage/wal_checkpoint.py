"""SQLite: the write-ahead log copied into the database file on a thread of its own.

In WAL mode a commit appends its pages to the ``-wal`` file; a *checkpoint* copies them into the
database file and syncs it. By default the connection whose commit takes the log past 1,000
pages runs that checkpoint itself, inside the request that committed: on the Synthea ingest
(one client) that was ~9 % of the time (docs/performance.md, session 17). Here a thread per
:class:`~fhir_server.storage.db.Database` runs a ``PASSIVE`` checkpoint after commits, at most
every ``interval`` seconds, on a connection of its own: SQLite releases the GIL while it copies
and syncs, so the request thread goes on meanwhile. ``PASSIVE`` never waits for (or blocks) a
reader or a writer; what it cannot copy yet is copied by a later one.

The connections' own automatic checkpoint stays as a bound (:data:`BACKSTOP_PAGES`, ~40 MB of
log): it is reached only if this thread falls behind or is not running (a bare engine, a
process that only reads). Durability is unchanged: with ``synchronous=NORMAL`` a commit is not
synced and a checkpoint is, wherever it runs.

Idle, the thread waits for a commit (no polling). Forked children (``fhir-server import``'s
workers) start a thread of their own on their first commit; the parent's connection is never
used or closed in a child (SQLite forbids carrying a connection across ``fork``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import weakref

log = logging.getLogger("fhir_server.storage")

#: ``PRAGMA wal_autocheckpoint`` of the engine's connections: the log length (pages) at which a
#: committing connection checkpoints itself, if this thread has not kept up
BACKSTOP_PAGES = 10_000
#: the shortest time between two checkpoints of the thread (commits in between share one)
INTERVAL_SECONDS = 0.05

_live: weakref.WeakSet[Checkpointer] = weakref.WeakSet()
#: connections a forked child inherited: kept referenced, so never closed there
_inherited: list[sqlite3.Connection] = []


class Checkpointer:
    """Checkpoints one SQLite file after commits (:meth:`committed`), on a daemon thread started
    by the first commit."""

    def __init__(self, path: str, interval: float = INTERVAL_SECONDS) -> None:
        self.path = path
        self.interval = interval
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        _live.add(self)

    def committed(self) -> None:
        """A transaction committed: checkpoint soon."""
        if self._thread is None:
            self._start()
        self._wake.set()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name=f"wal-checkpoint {self.path}", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        try:
            conn = self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA busy_timeout=0")  # another process checkpointing: skip, not wait
            while not self._stop.is_set():
                self._wake.wait()
                self._wake.clear()
                if self._stop.is_set():
                    break
                # busy (another process's checkpoint), or the file is gone: the next commit tries again
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                self._stop.wait(self.interval)
        except Exception:  # never take the server down; the connections' backstop checkpoints instead
            log.exception("the WAL checkpoint thread stopped; commits checkpoint the log themselves")
        finally:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def stop(self) -> None:
        """Stop the thread (its connection closed); later commits start none."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _forked(self) -> None:
        # in a forked child: the thread did not come along; its connection must not be closed
        # here (nor used), so it is only kept referenced; the child's first commit starts anew
        if self._conn is not None:
            _inherited.append(self._conn)
        self._conn = None
        self._thread = None
        self._lock = threading.Lock()
        self._wake = threading.Event()


def _after_fork_in_child() -> None:
    for checkpointer in list(_live):
        checkpointer._forked()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
