"""Validation and index extraction of a large Bundle's resources on several cores.

Preparing a resource (``ResourceService.prepare_update``: both validations and, when its
references are final, its index rows) is about two thirds of the CPU a transaction of PUTs
costs, and it is pure: no database, no shared state. A hospital loading its history sends
one Bundle after another from one client, so one process works while the other cores idle.
This pool runs the same ``prepare_update`` in worker processes, a share of the Bundle's
entries each, and hands back the same ``Prepared`` objects (verdict, warnings, rows).

The workers are forked from a fork server that has imported the validators once
(``forkserver``: a clean process, never a fork of a server with threads and open
connections). Off by default in the server (``FHIR_PREPARE_WORKERS=0``); ``fhir-server
import`` uses one worker per core.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from fhir_server.service.indexing import index_rows
from fhir_server.service.resources import Prepared, ResourceService

log = logging.getLogger("fhir_server.prepare_pool")

#: one job: (resource type, id, resource, whether its index rows are wanted)
Job = tuple[str, str, Any, bool]

#: the worker's own service (no database: preparing never touches one)
_service: ResourceService | None = None


def _start(r4b_model_check: bool, region_codes: str) -> None:
    global _service
    _service = ResourceService(None, r4b_model_check=r4b_model_check, region_codes=region_codes, prepare_index=index_rows)  # type: ignore[arg-type]


def _ready() -> bool:
    return _service is not None


def _prepare(jobs: list[Job]) -> list[Prepared]:
    assert _service is not None, "worker not started"
    done = [_service.prepare_update(res_type, res_id, resource, index=index) for res_type, res_id, resource, index in jobs]
    for prepared in done:
        if prepared.rows is not None:
            prepared.rows = prepared.rows.packed()  # the server unpickles these: tuples cost far less than dicts
    return done


class PreparePool:
    """``workers`` processes preparing the resources of Bundles with at least ``min_jobs`` of them."""

    def __init__(self, workers: int, *, r4b_model_check: bool, region_codes: str, min_jobs: int = 32) -> None:
        self.workers = workers
        self.min_jobs = min_jobs
        #: resources prepared by the workers so far
        self.prepared = 0
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__, "fhir_server.model.validate", "fhir_server.search.extract"])
        self._executor = ProcessPoolExecutor(workers, mp_context=context, initializer=_start, initargs=(r4b_model_check, region_codes))
        # the workers are started now, off the event loop: starting one blocks whoever submits
        # (the fork server imports the validators first), and the first large Bundle should not
        threading.Thread(target=self._start_workers, name="prepare-pool-start", daemon=True).start()

    def _start_workers(self) -> None:
        try:
            for future in [self._executor.submit(_ready) for _ in range(self.workers)]:
                future.result()
        except Exception:  # shut down meanwhile; a broken pool fails its first Bundle loudly
            log.warning("prepare workers did not start", exc_info=True)

    def wanted(self, jobs: int) -> bool:
        return jobs >= self.min_jobs

    async def prepare(self, jobs: list[Job]) -> list[Prepared]:
        """``prepare_update`` of every job, in order; the event loop serves others meanwhile."""
        # two shares per worker: a worker that finishes early takes another
        shares = max(1, min(len(jobs), self.workers * 2))
        size = -(-len(jobs) // shares)
        futures = [asyncio.wrap_future(self._executor.submit(_prepare, jobs[i : i + size])) for i in range(0, len(jobs), size)]
        done = [prepared for chunk in await asyncio.gather(*futures) for prepared in chunk]
        self.prepared += len(done)
        return done

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
