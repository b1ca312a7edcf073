"""The transactions of ``fhir-server import`` written by several processes at once.

Validation and index extraction are most of a write's CPU and run before the write lock, so two
processes writing different transactions keep two cores busy while the database arbitrates the
writes themselves (SQLite's single writer lock, PostgreSQL's rows). Each worker writes through a
pipeline of its own (the same pipeline, write path and change log as every other door, with its
own database connections). A transaction is handed out only once every transaction it needs
committed first (``import_order.prerequisites``) is.

A process's first write of a type builds the type's model classes and index plan (~0.3 s for the
Synthea sample's 13 types), which every worker used to pay again. So the workers are forked from
one process, the *zygote*, forked once the importer has read more than one transaction's resources
(``importer._WorkersOnDemand``): it builds them for the first resource of each type while the
importer is still reading the files, on the other core, and the workers it
forks once the transactions are planned start with them built. As the workers did not exist
when the files were read, each transaction goes to its worker with its jobs (the resources'
bytes), and the outcomes (one status per resource) come back.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import queue
import signal
import threading
import traceback
from collections.abc import Callable
from contextlib import AbstractContextManager, suppress
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from types import TracebackType
from typing import Any, cast

#: in a worker: writes one transaction (its jobs) and gives each job's outcome, by node index
WriteBatch = Callable[[list[Any]], dict[int, str]]


def available() -> bool:
    """Whether workers can be forked here (they inherit what the zygote built)."""
    return "fork" in multiprocessing.get_all_start_methods()


class Workers:
    """``count`` worker processes, forked by a zygote started now; use as a context manager.

    ``warm(job)`` runs in the zygote for each job :meth:`warm` is given (failures ignored: the
    write reports them); ``open_writer()`` is entered in each worker and gives its writer.
    """

    def __init__(self, count: int, open_writer: Callable[[], AbstractContextManager[WriteBatch]], warm: Callable[[Any], None]) -> None:
        context = multiprocessing.get_context("fork")
        warm_in, self._warm_out = context.Pipe(duplex=False)
        self._pids, pids_out = context.Pipe(duplex=False)
        self._conns: list[Connection] = []
        theirs: list[Connection] = []
        for _ in range(count):
            mine, their = context.Pipe()
            self._conns.append(mine)
            theirs.append(their)
        ours = [self._warm_out, self._pids, *self._conns]
        self._zygote: BaseProcess = context.Process(target=_zygote, args=(warm_in, pids_out, theirs, ours, open_writer, warm))
        self._zygote.start()
        for conn in (warm_in, pids_out, *theirs):
            conn.close()
        self._worker_pids: list[int] = []
        # the jobs go through a thread: a pipe's send waits while the zygote is busy, the reading must not
        self._warm_jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._sender = threading.Thread(target=self._send_warm_jobs, name="import-warm-jobs", daemon=True)
        self._sender.start()

    def _send_warm_jobs(self) -> None:
        while True:
            job = self._warm_jobs.get()
            try:
                self._warm_out.send(job)
            except OSError:  # the zygote is gone: the write will say so
                return
            if job is None or job is False:
                return

    def warm(self, job: Any) -> None:
        """Have the zygote build what ``job``'s write will need (it runs ``warm(job)``)."""
        self._warm_jobs.put(job)

    def write(
        self, batches: list[list[Any]], prerequisites: list[set[int]], progress: Callable[[int], None] | None = None
    ) -> dict[int, str]:
        """Every transaction of ``batches`` (lists of jobs) written by the workers, each once its
        ``prerequisites`` (transaction numbers) are; the outcome of every job's node."""
        self._warm_jobs.put(None)  # the zygote forks the workers
        try:
            self._worker_pids = self._pids.recv()
        except EOFError:
            raise RuntimeError("the import's zygote process ended unexpectedly") from None
        outcome: dict[int, str] = {}
        waiting = list(range(len(batches)))
        done: set[int] = set()
        idle = list(self._conns)
        busy: dict[Connection, int] = {}
        while waiting or busy:
            while idle:
                ready = next((b for b in waiting if prerequisites[b] <= done), None)
                if ready is None:
                    break
                waiting.remove(ready)
                conn = idle.pop()
                conn.send(batches[ready])
                busy[conn] = ready
            for answered in wait(list(busy)):
                conn = cast(Connection, answered)  # wait gives back the connections it was given
                try:
                    outcomes, failure = conn.recv()
                except EOFError:
                    raise RuntimeError("an import worker process ended unexpectedly") from None
                if failure is not None:
                    raise RuntimeError(f"an import worker failed:\n{failure}")
                outcome.update(outcomes)
                number = busy.pop(conn)
                done.add(number)
                idle.append(conn)
                if progress:
                    progress(len(batches[number]))
        return outcome

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        for conn in self._conns:
            with suppress(OSError):  # the worker is gone already
                conn.send(None)
        if not self._worker_pids:  # never asked to write: the zygote ends instead of forking
            self._warm_jobs.put(False)
        self._sender.join(timeout=60)
        self._zygote.join(timeout=60)  # the zygote waits for its workers
        if self._zygote.is_alive():  # a worker still writing after a failure elsewhere: its transaction rolls back
            for pid in self._worker_pids:
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            self._zygote.terminate()
            self._zygote.join()
        for conn in (*self._conns, self._pids, self._warm_out):
            conn.close()


def _zygote(
    jobs: Connection,
    pids: Connection,
    conns: list[Connection],
    parents: list[Connection],
    open_writer: Callable[[], AbstractContextManager[WriteBatch]],
    warm: Callable[[Any], None],
) -> None:
    """Warm up for each job sent until None (then fork the workers and wait for them) or False
    (end). ``parents``: the importer's ends, closed here so that a worker sees its end if the
    importer is gone."""
    for conn in parents:
        conn.close()
    try:
        while (job := jobs.recv()) is not None:
            if job is False:
                return
            with suppress(Exception):  # only a head start: the write itself reports what is wrong
                warm(job)
    except EOFError:  # the importer is gone
        return
    gc.freeze()  # what was built: never scanned by the workers' collector, nor copied by touching it
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_serve, args=(conn, open_writer), daemon=True) for conn in conns]
    for worker in workers:
        worker.start()
    for conn in conns:
        conn.close()
    pids.send([worker.pid for worker in workers])
    pids.close()
    for worker in workers:
        worker.join()


def _serve(conn: Connection, open_writer: Callable[[], AbstractContextManager[WriteBatch]]) -> None:
    """A worker: write each transaction it is sent until it is sent None."""
    try:
        with open_writer() as write:
            while (batch := conn.recv()) is not None:
                conn.send((write(batch), None))
    except Exception:  # noqa: BLE001 (any failure: reported to the parent, which stops the import with it)
        with suppress(OSError):
            conn.send((None, traceback.format_exc()))
    finally:
        conn.close()
