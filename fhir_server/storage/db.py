"""Engine creation and the one-transaction-per-request discipline.

SQLite: WAL, ``synchronous=NORMAL``, a busy timeout, and writers serialised:
inside a process by a lock, across processes (``--workers N``) by an ``flock``
on ``<database>.lock`` plus ``BEGIN IMMEDIATE`` and the busy timeout, so
clients never see "database is locked". PostgreSQL: a connection pool (connections the server
closed are replaced at checkout, see ``_drop_closed_connections``); the JSONB mirror lives in the schema.
"""

from __future__ import annotations

import asyncio
import os
import select
import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext, suppress

try:  # POSIX; elsewhere SQLite's busy timeout alone serialises processes
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from fhir_server.storage import changelog, deferred, wal_checkpoint
from fhir_server.storage.placeholders import positional

# CPython's sqlite3 (3.11) binds None only after looking for ``__adapt__`` on its
# PrepareProtocol type, which formats and throws away an AttributeError each time;
# an adapter registered for None is found in the registry first and returns None,
# which is bound as NULL as before. ~0.15 µs per None bound: an audit row binds two,
# an index row one or more (measured: 99-row INSERT, 1.08 -> 0.73 µs per row).
_NO_ADAPTATION: dict[None, None] = {}
sqlite3.register_adapter(type(None), _NO_ADAPTATION.get)

#: longest wait between two attempts at the write lock from an event loop (normally a release wakes it)
_LOCK_WAIT_SECONDS = 0.002
T = TypeVar("T")
#: how much of a SQLite file is read through mmap (address space only; pages stay in the OS cache)
SQLITE_MMAP_BYTES = 1 << 30


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def create_engine(url: str, *, pool_size: int = 10, busy_timeout: float = 30.0, statement_timeout: float = 0, **kwargs: Any) -> Engine:
    """Create an engine tuned for the server (see module docstring).

    ``statement_timeout`` (seconds, PostgreSQL): longer statements are cancelled by the database.
    """
    if is_sqlite(url):
        engine = sa.create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": busy_timeout},
            pool_size=pool_size,
            max_overflow=pool_size,
            **kwargs,
        )
        _configure_sqlite(engine, busy_timeout)
        return engine
    engine = sa.create_engine(url, pool_size=pool_size, max_overflow=pool_size, **kwargs)
    _drop_closed_connections(engine)

    @event.listens_for(engine, "connect")
    def _on_pg_connect(dbapi_conn: Any, _record: Any) -> None:
        autocommit = dbapi_conn.autocommit
        dbapi_conn.autocommit = True
        with dbapi_conn.cursor() as cur:
            # psycopg prepares a statement after 5 runs, and PostgreSQL then switches to a
            # generic plan that ignores the values: a dense family= prefix (5 % of 100k
            # Patients) went from 2 ms to 16-40 ms. Search selectivity depends on the values.
            cur.execute(f"SET plan_cache_mode = {deferred.SEARCH_PLAN_CACHE_MODE}")
            if statement_timeout > 0:
                cur.execute(f"SET statement_timeout = {int(statement_timeout * 1000)}")
        dbapi_conn.autocommit = autocommit

    return engine


def _drop_closed_connections(engine: Engine) -> None:
    """Replace a pooled PostgreSQL connection the server has closed before it is used.

    ``pool_pre_ping`` sends a query per checkout: a round trip that was 9 % of a busy server's
    time (and of its subscription worker's). A connection the server closed (a restart,
    ``pg_terminate_backend``, an idle timeout) has its FATAL message or end of stream waiting on
    the socket, while an idle live one has nothing to read: a zero-timeout ``poll`` tells them
    apart without a round trip. ``DisconnectionError`` makes the pool connect anew (and retry).
    """

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        if dbapi_conn.closed or dbapi_conn.broken or _has_input(dbapi_conn.fileno()):
            raise sa.exc.DisconnectionError("the database server closed the connection")


def _has_input(fd: int) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
    return bool(poller.poll(0))


def _configure_sqlite(engine: Engine, busy_timeout: float) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below issue BEGIN itself: pysqlite's
        # own deferred BEGIN breaks savepoints and transactional DDL.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        # memory-mapped reads: another worker's commit empties this connection's page cache, and
        # refilling it by pread() per page made a create at 60k resources 2x slower (416 vs 733/s)
        cur.execute(f"PRAGMA mmap_size={SQLITE_MMAP_BYTES}")
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        cur.execute("PRAGMA foreign_keys=ON")
        # checkpoints run on a thread of their own (wal_checkpoint.py); this bounds the log if not
        cur.execute(f"PRAGMA wal_autocheckpoint={wal_checkpoint.BACKSTOP_PAGES}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.info.pop("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


class _FileLock:
    """An exclusive lock on ``<database>.lock`` shared by every process on the file.

    SQLite's own busy handler polls with sleeps of up to 100 ms, so with several
    worker processes a waiting writer often sleeps long after the lock is free;
    ``flock`` wakes the next writer as soon as the current one commits.

    An event loop must not block in ``flock``, and polling costs CPU (a 0.5 ms
    ``asyncio.sleep`` is a 0 ms timer under uvloop: ~50,000 failed ``flock`` calls
    a second) or leaves the lock idle. So every release also writes a byte to the
    FIFO ``<database>.lock.fifo``, which waiting loops watch with ``add_reader``:
    the kernel wakes them when the lock is released, and nobody spins. The FIFO
    only wakes; ``flock`` still decides (and is dropped by the kernel when a holder
    dies, so a lost wake-up costs at most ``wait_released``'s timeout).

    Priority: a loop that found the lock taken holds a shared ``flock`` on
    ``<database>.lock.want`` until it gets it; a background process (the SATUSEHAT sync)
    asks for that file exclusively before it tries, and does not try while it cannot get it.
    So a released lock goes to the waiting server, not to the sync's next transaction.
    """

    def __init__(self, path: str) -> None:
        self._path = path
        self._fd: int | None = None
        self.wake_fd: int | None = None
        self._want_fd: int | None = None
        self._open()

    def _open(self) -> int:
        """The lock file's descriptor, opened again after :meth:`close` (a disposed Database can be used again)."""
        if self._fd is None:
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            self.wake_fd = _open_fifo(self._path + ".fifo")
            self._want_fd = os.open(self._path + ".want", os.O_RDWR | os.O_CREAT, 0o600)
        return self._fd

    def close(self) -> None:
        """Close the descriptors (Database.dispose); not while the lock is held."""
        fds = (self._fd, self.wake_fd, self._want_fd)
        self._fd = self.wake_fd = self._want_fd = None
        for descriptor in fds:
            if descriptor is not None:
                os.close(descriptor)

    def announce_waiting(self, waiting: bool) -> bool:
        """Say (or stop saying) that a writer of this process waits for the lock; False when it
        could not be said just now: a background process was looking (``others_waiting`` holds
        the exclusive lock for that instant), so the caller says it again on its next try."""
        self._open()
        assert self._want_fd is not None
        try:
            fcntl.flock(self._want_fd, (fcntl.LOCK_SH | fcntl.LOCK_NB) if waiting else fcntl.LOCK_UN)
        except BlockingIOError:
            return False
        return True

    def others_waiting(self) -> bool:
        """Whether a writer of another process waits for the lock (see the class docstring)."""
        self._open()
        assert self._want_fd is not None
        try:
            fcntl.flock(self._want_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(self._want_fd, fcntl.LOCK_UN)
        return False

    def __enter__(self) -> None:
        fcntl.flock(self._open(), fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        fcntl.flock(self._open(), fcntl.LOCK_UN)
        if self.wake_fd is not None:
            with suppress(OSError):  # full (nobody has been waiting for a long time): a waiter drains it
                os.write(self.wake_fd, b"\0")

    def try_acquire(self) -> bool:
        try:
            fcntl.flock(self._open(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    async def wait_released(self, timeout: float) -> None:
        """Until some process releases the lock (or ``timeout`` seconds: the caller retries)."""
        loop = asyncio.get_running_loop()
        self._open()
        if self.wake_fd is None:
            await asyncio.sleep(timeout)
            return
        woken = loop.create_future()

        def wake() -> None:
            if not woken.done():
                woken.set_result(None)

        loop.add_reader(self.wake_fd, wake)
        timer = loop.call_later(timeout, wake)
        try:
            await woken
        finally:
            loop.remove_reader(self.wake_fd)
            timer.cancel()
        with suppress(BlockingIOError):  # another process drained it first
            os.read(self.wake_fd, 4096)  # drain: the next wait sleeps until the next release


def _open_fifo(path: str) -> int | None:
    """The wake-up FIFO, opened read-write and non-blocking; None where FIFOs cannot be made."""
    try:
        with suppress(FileExistsError):
            os.mkfifo(path, 0o600)
        # O_RDWR: never blocks on open and never sees EOF (Linux and the BSDs)
        return os.open(path, os.O_RDWR | os.O_NONBLOCK)
    except OSError:  # e.g. a file system without FIFOs: waiters fall back to short sleeps
        return None


def _sqlite_file(engine: Engine) -> str | None:
    database = engine.url.database
    return database if database and database != ":memory:" and not database.startswith("file:") else None


@contextmanager
def _deferring(conn: Connection) -> Iterator[None]:
    """Defer version and index rows for the transaction's body; write them before the commit."""
    # conn.info lives as long as the pooled DBAPI connection: drop the after-commit callbacks
    # a rolled-back transaction may have left there, or the next commit would run them
    conn.info.pop("after_commit", None)
    deferred.begin(conn)
    try:
        yield
        deferred.flush(conn)
        pending = deferred.pending(conn)
        if pending is not None:
            changelog.write_pending(conn, pending.changes)  # the last statement: see changelog.py
    finally:
        deferred.discard(conn)


#: this server's tables (the schema first in search_path) with their sizes, largest first
_TABLE_SIZES_SQL = (
    "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = current_schema() AND c.relkind = 'r' ORDER BY 2 DESC, 1"
)


class Database:
    """Owns the engine; hands out read and write transactions."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        deferred.install(engine)
        self._write_lock = threading.RLock() if self.dialect == "sqlite" else None
        path = _sqlite_file(engine) if self.dialect == "sqlite" else None
        self._file_lock = _FileLock(path + ".lock") if path and fcntl is not None else None
        self._checkpointer = wal_checkpoint.Checkpointer(path) if path else None
        self._local = threading.local()
        self._readers: list[Any] = []
        self._readers_lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> Database:
        return cls(create_engine(url, **kwargs))

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A short read transaction. On SQLite one snapshot, from its first statement on; on
        PostgreSQL READ COMMITTED: each statement sees what was committed when it started, so a
        caller that compares two reads orders them for that (the change log's last ``seq`` read
        *before* what it guards: subscriptions/matcher.py, service/transaction.py)."""
        with self.engine.connect() as conn, conn.begin():
            yield conn

    async def read_off_loop(self, work: Callable[[Connection], T]) -> T:
        """``work`` in a read transaction on a thread, for a background task on the event loop:
        the loop serves requests while the task waits on the database (the drivers release the
        GIL while they wait; on the loop, a busy subscription worker's round trips took a
        third of the server's time from requests on PostgreSQL)."""

        def run() -> T:
            with self.read() as conn:
                return work(conn)

        return await asyncio.to_thread(run)

    def try_write_lock(self) -> bool:
        """Take SQLite's write locks (this process's and the file's) if free, without waiting.

        For an event loop, which must not block on another worker's transaction: on True
        the caller holds them until ``release_write_lock`` and writes with
        ``write(locked=True)``. Always True on PostgreSQL (no lock to take).
        """
        if self._write_lock is None:
            return True
        if not self._write_lock.acquire(blocking=False):
            return False
        if self._file_lock is not None and not self._file_lock.try_acquire():
            self._write_lock.release()
            return False
        return True

    async def acquire_write_lock(self, *, defer_to_others: bool = False) -> None:
        """``try_write_lock`` until it succeeds, for an event loop: between attempts the loop
        serves other requests and is woken when another process releases the file lock.

        A loop that has to wait says so to the other processes; ``defer_to_others`` (a background
        process) does not try while another process's writer waits (``_FileLock``)."""
        lock = self._file_lock
        announced = False
        try:
            while True:
                if not (defer_to_others and self.others_waiting_for_write_lock()) and self.try_write_lock():
                    return
                if lock is None:
                    await asyncio.sleep(_LOCK_WAIT_SECONDS)
                    continue
                if not defer_to_others and not announced:
                    # said once it is said: a look by a background process at that instant made it
                    # fail silently, and the background process kept the lock from this writer
                    announced = lock.announce_waiting(True)
                # a thread of this process holding the lock does not write to the FIFO
                await lock.wait_released(_LOCK_WAIT_SECONDS)
        finally:
            if announced:
                assert lock is not None
                lock.announce_waiting(False)

    def others_waiting_for_write_lock(self) -> bool:
        """Whether a writer of another process waits for SQLite's write lock (False on PostgreSQL)."""
        return self._file_lock is not None and self._file_lock.others_waiting()

    @contextmanager
    def _locks(self) -> Iterator[None]:
        assert self._write_lock is not None
        with self._write_lock, self._file_lock or nullcontext():
            yield

    def release_write_lock(self) -> None:
        if self._write_lock is None:
            return
        if self._file_lock is not None:
            self._file_lock.release()
        self._write_lock.release()

    @contextmanager
    def write(self, *, locked: bool = False) -> Iterator[Connection]:
        """One write transaction: committed on success, rolled back on any error.

        ``locked``: the caller already holds the write locks (``try_write_lock``).
        Callables appended to ``conn.info["after_commit"]`` run once the commit succeeded.
        """
        if self._write_lock is None:
            with self.engine.begin() as conn:
                with _deferring(conn):
                    yield conn
                callbacks = conn.info.pop("after_commit", [])
        else:
            with nullcontext() if locked else self._locks(), self.engine.connect() as conn:
                conn.info["sqlite_begin"] = "IMMEDIATE"
                with conn.begin():
                    with _deferring(conn):
                        yield conn
                    callbacks = conn.info.pop("after_commit", [])
            if self._checkpointer is not None:
                self._checkpointer.committed()
        for callback in callbacks:  # reached only when the commit succeeded
            callback()

    def _reader(self, fixed_plan: bool = False) -> Any:
        """This thread's autocommit DBAPI connection for single-statement reads.

        On PostgreSQL ``fixed_plan`` gives a second one whose prepared statements may use
        a generic plan (``plan_cache_mode = auto``): for statements whose best plan does not
        depend on the values, like a read by id (a unique index lookup), planning is then
        skipped: 34 instead of 56 µs a read, one connection, measured. The other one keeps
        the engine's ``force_custom_plan``: a search's plan depends on its values.
        """
        attr = "fixed" if fixed_plan and self.dialect == "postgresql" else "conn"
        conn = getattr(self._local, attr, None)
        if conn is None:
            fairy = self.engine.raw_connection()
            fairy.detach()  # owned by this thread from now on, outside the pool
            conn = fairy.dbapi_connection
            assert conn is not None  # None only once invalidated; this one is fresh
            if self.dialect == "postgresql":
                conn.autocommit = True
                if attr == "fixed":
                    conn.execute("SET plan_cache_mode = auto")
            setattr(self._local, attr, conn)
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def fetch_one(self, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """One row of a single read-only statement.

        The hot read path (read by id, vread) skips SQLAlchemy's statement
        machinery, the pool and BEGIN/COMMIT: one SELECT is atomic on its own,
        and each thread keeps one autocommit connection for it. ``sql`` uses
        ``?`` placeholders; they become ``%s`` for psycopg.
        """
        sql = positional(sql, self.dialect)
        with self.raw_reads(snapshot=False, fixed_plan=True) as fetch_all:
            rows = fetch_all(sql, params)
        return rows[0] if rows else None

    @contextmanager
    def raw_reads(
        self,
        *,
        snapshot: bool,
        fixed_plan: bool = False,
    ) -> Iterator[Callable[[str, Any], list[tuple[Any, ...]]]]:
        """``fetch_all(sql, params)`` on this thread's autocommit DBAPI connection.

        ``sql`` is in the driver's own placeholder style. With ``snapshot`` the
        statements share one read-only transaction (one consistent view: a page
        and its includes or total); without it each runs on its own, which is
        atomic for a single SELECT and saves the BEGIN/COMMIT round trips. A
        connection found broken (the database restarted) is dropped; a lone
        statement is then retried once on a new one. ``fixed_plan``: statements whose
        plan does not depend on their values (see ``_reader``).
        """
        conn = self._reader(fixed_plan)
        ran = False

        def run(sql: str, params: Any) -> list[tuple[Any, ...]]:
            cur = conn.cursor()
            cur.execute(sql, params)
            rows = cur.fetchall()
            cur.close()
            return rows

        def fetch_all(sql: str, params: Any) -> list[tuple[Any, ...]]:
            nonlocal conn, ran
            try:
                rows = run(sql, params)
            except self.engine.dialect.loaded_dbapi.OperationalError:
                if not self._broken(conn):
                    raise
                self._drop_reader(conn)
                if snapshot or ran:
                    raise
                conn = self._reader(fixed_plan)  # retry once: nothing of this read has run yet
                rows = run(sql, params)
            ran = True
            return rows

        if snapshot:
            conn.execute("BEGIN" if self.dialect == "sqlite" else "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        try:
            yield fetch_all
        except BaseException:
            if snapshot and not self._broken(conn):
                conn.execute("ROLLBACK")
            raise
        else:
            if snapshot:
                conn.execute("COMMIT")

    def _broken(self, conn: Any) -> bool:
        if self.dialect == "sqlite":
            return False
        return bool(conn.closed or conn.broken)

    def _drop_reader(self, conn: Any) -> None:
        for attr in ("conn", "fixed"):
            if getattr(self._local, attr, None) is conn:
                setattr(self._local, attr, None)
        with self._readers_lock:
            if conn in self._readers:
                self._readers.remove(conn)
        with suppress(Exception):  # it is broken already
            conn.close()

    def analyze(self) -> None:
        """Refresh the query planner's statistics after a bulk load.

        With stale statistics PostgreSQL can misjudge a search with thousands of
        matches by orders of magnitude. There it is ``VACUUM (ANALYZE)`` of this
        server's tables (not of every schema in the database): vacuuming also sets
        the visibility map, without which the index-only scans that searches rely
        on visit the heap for every index entry (a dense family search at 100k
        Patients: 4.8 ms -> 1.3 ms).
        """
        if self.dialect != "postgresql":
            with self.engine.connect() as conn:
                conn.exec_driver_sql("ANALYZE")
                conn.commit()
            return
        # every table of this server's schema (the table modules need not all be imported here),
        # in two halves of about equal size vacuumed at once on two connections: one VACUUM
        # keeps one core busy (after the Synthea sample's import 0.27-0.30 s for all, 0.19-0.21 s
        # in halves)
        with self.engine.connect() as conn:
            sizes = conn.exec_driver_sql(_TABLE_SIZES_SQL).all()
        halves: tuple[list[str], list[str]] = ([], [])
        loads = [0, 0]
        for name, size in sizes:  # largest first, each to the lighter half
            lighter = 0 if loads[0] <= loads[1] else 1
            halves[lighter].append(name)
            loads[lighter] += size
        with ThreadPoolExecutor(2, thread_name_prefix="vacuum") as pool:
            list(pool.map(self._vacuum_analyze, halves))

    def _vacuum_analyze(self, tables: list[str]) -> None:
        if not tables:
            return
        with self.engine.connect() as conn:
            conn.connection.dbapi_connection.autocommit = True  # type: ignore[union-attr]
            try:
                conn.exec_driver_sql("VACUUM (ANALYZE) " + ", ".join(f'"{name}"' for name in tables))
            finally:
                conn.connection.dbapi_connection.autocommit = False  # type: ignore[union-attr]

    def dispose(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
        with self._readers_lock:
            for conn in self._readers:
                with suppress(Exception):  # closing a dead connection
                    conn.close()
            self._readers.clear()
        self._local = threading.local()
        self.engine.dispose()
        if self._file_lock is not None:
            self._file_lock.close()
