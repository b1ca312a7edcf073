"""The transactions of ``fhir-server import`` written by several processes at once.

Validation and index extraction are most of a write's CPU and run before the write lock, so two
processes writing different transactions keep two cores busy while the database arbitrates the
writes themselves (SQLite's single writer lock, PostgreSQL's rows). The workers are forked once
the files are read and ordered: they inherit the resources and the plan, so nothing but a
transaction's number goes to them and its outcomes (one status per resource) come back. Each
worker writes through a pipeline of its own (the same pipeline, write path and change log as
every other door, with its own database connections). A transaction is handed out only once
every transaction it needs committed first (``import_order.prerequisites``) is.
"""

from __future__ import annotations

import multiprocessing
import traceback
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, suppress
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import cast

#: in a worker: writes one transaction (node indexes) and gives each node's outcome
WriteBatch = Callable[[list[int]], dict[int, str]]
#: in a worker: what ``open_writer`` gives, the writer and work to do while no transaction waits
#: (one step per item: the worker looks for a transaction between steps)
Writer = tuple[WriteBatch, Iterator[object]]


def available() -> bool:
    """Whether workers can be forked here (they inherit the read resources instead of receiving them)."""
    return "fork" in multiprocessing.get_all_start_methods()


def write_in_workers(
    count: int,
    batches: list[list[int]],
    prerequisites: list[set[int]],
    open_writer: Callable[[], AbstractContextManager[Writer]],
    progress: Callable[[int], None] | None = None,
) -> dict[int, str]:
    """Every transaction of ``batches`` written by ``count`` forked processes, each writing
    through ``open_writer()`` (entered in the worker); the outcome of every node."""
    context = multiprocessing.get_context("fork")
    workers: list[tuple[BaseProcess, Connection]] = []
    outcome: dict[int, str] = {}
    try:
        for _ in range(count):
            mine, theirs = context.Pipe()
            process = context.Process(target=_serve, args=(theirs, batches, open_writer), daemon=True)
            process.start()
            theirs.close()
            workers.append((process, mine))
        waiting = list(range(len(batches)))
        done: set[int] = set()
        idle = [conn for _, conn in workers]
        busy: dict[Connection, int] = {}
        while waiting or busy:
            while idle:
                ready = next((b for b in waiting if prerequisites[b] <= done), None)
                if ready is None:
                    break
                waiting.remove(ready)
                conn = idle.pop()
                conn.send(ready)
                busy[conn] = ready
            for answered in wait(list(busy)):
                conn = cast(Connection, answered)  # wait gives back the connections it was given
                try:
                    number, outcomes, failure = conn.recv()
                except EOFError:
                    raise RuntimeError("an import worker process ended unexpectedly") from None
                if failure is not None:
                    raise RuntimeError(f"an import worker failed:\n{failure}")
                outcome.update(outcomes)
                done.add(busy.pop(conn))
                idle.append(conn)
                if progress:
                    progress(len(batches[number]))
    finally:
        for _, conn in workers:
            with suppress(OSError):  # the worker is gone already
                conn.send(None)
        for worker, conn in workers:
            worker.join(timeout=60)
            if worker.is_alive():  # still writing after a failure elsewhere: its transaction rolls back
                worker.terminate()
                worker.join()
            conn.close()
    return outcome


_DONE = object()


def _serve(conn: Connection, batches: list[list[int]], open_writer: Callable[[], AbstractContextManager[Writer]]) -> None:
    """A worker: write each transaction it is sent until it is sent None."""
    number = None
    try:
        with open_writer() as (write, idle_work):
            idle = True
            while True:
                while idle and not conn.poll():  # a step at a time while nothing is sent (the first transactions wait for one)
                    idle = next(idle_work, _DONE) is not _DONE
                if (number := conn.recv()) is None:
                    break
                conn.send((number, write(batches[number]), None))
    except Exception:  # noqa: BLE001 (any failure: reported to the parent, which stops the import with it)
        with suppress(OSError):
            conn.send((number, None, traceback.format_exc()))
    finally:
        conn.close()
