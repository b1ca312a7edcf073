"""The export worker: one daemon thread per server process.

It polls the ``export_jobs`` table every ``export_poll_interval`` seconds,
claims a job (compare-and-set, see ``jobs``), runs it and records the result.
While it runs, the lease is renewed (with the X-Progress text) every 2 s (at
most a third of ``export_lease_seconds``) and, between batches, a cheap read
checks that the job is still ours (not cancelled, not taken over). An exception fails the job with its message and
the thread carries on with the next one. A job whose worker died (process
killed, machine lost) keeps ``status='running'`` with a lease that runs out;
any worker then claims it again and runs it from scratch.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from fhir_server.bulk import jobs
from fhir_server.bulk.exporter import Cancelled, remove_files, run_export
from fhir_server.storage import claims
from fhir_server.storage.db import Database

log = logging.getLogger("fhir_server.bulk")

DEFAULT_POLL_INTERVAL = 1.0
DEFAULT_LEASE_SECONDS = 60.0
DEFAULT_EXPORT_DIR = "fhir-export"
#: seconds between lease renewals that also publish the X-Progress text (at most a third of the lease)
PROGRESS_EVERY = 2.0


def export_dir(settings: Any) -> Path:
    """``settings.export_dir`` (default ``./fhir-export``), resolved against the working directory."""
    configured = getattr(settings, "export_dir", "") or DEFAULT_EXPORT_DIR
    return Path(configured).expanduser().resolve()


def poll_interval(settings: Any) -> float:
    return float(getattr(settings, "export_poll_interval", 0) or DEFAULT_POLL_INTERVAL)


def lease_seconds(settings: Any) -> float:
    return float(getattr(settings, "export_lease_seconds", 0) or DEFAULT_LEASE_SECONDS)


class ExportWorker:
    """Claims and runs export jobs; ``start()`` runs it in a daemon thread, ``stop()`` ends it."""

    def __init__(
        self,
        db: Database,
        directory: Path,
        *,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        owner: str | None = None,
        batch_size: int = 1000,
    ) -> None:
        self.db = db
        self.directory = directory
        self.poll_interval = poll_interval
        self.lease_seconds = lease_seconds
        self.owner = owner or claims.worker_owner()
        self.batch_size = batch_size
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- one job -------------------------------------------------------------------------
    def run_once(self) -> str | None:
        """Claim one job and run it to its end; the job id, or None when there was none."""
        job = jobs.claim_next(self.db, self.owner, self.lease_seconds)
        if job is None:
            return None
        log.info("export %s claimed by %s (attempt %d)", job.id, self.owner, job.attempts)
        renewed = time.monotonic()
        checked = renewed

        def keep(progress: str) -> bool:
            nonlocal renewed, checked
            if self._stop.is_set():
                return False  # stopping: the job goes back to the queue (below)
            now = time.monotonic()
            if now - renewed >= min(self.lease_seconds / 3, PROGRESS_EVERY):
                renewed = checked = now
                return jobs.heartbeat(self.db, job.id, self.owner, self.lease_seconds, progress)
            if now - checked >= 0.2:
                checked = now
                return jobs.still_mine(self.db, job.id, self.owner)
            return True

        try:
            jobs.heartbeat(self.db, job.id, self.owner, self.lease_seconds, "exporting")
            manifest = run_export(self.db, job, self.directory, keep, self.batch_size)
        except Cancelled:
            log.info("export %s stopped (cancelled, taken over or worker stopping)", job.id)
            if self._stop.is_set():
                jobs.release(self.db, job.id, self.owner)  # back to the queue for the next worker
            current = jobs.get_job(self.db, job.id)
            if current is None or current.status == "cancelled":
                remove_files(self.directory, job.id)
            return job.id
        except Exception as exc:  # any failure becomes the job's error (logged)
            log.exception("export %s failed", job.id)
            jobs.fail(self.db, job.id, self.owner, f"{type(exc).__name__}: {exc}")
            return job.id
        if not jobs.finish(self.db, job.id, self.owner, manifest):
            # cancelled (or taken over) between the last check and the end: its files are not ours to keep
            current = jobs.get_job(self.db, job.id)
            if current is None or current.status == "cancelled":
                remove_files(self.directory, job.id)
        return job.id

    # -- the thread ----------------------------------------------------------------------
    def _loop(self) -> None:
        failing = False
        while not self._stop.is_set():
            try:
                ran = self.run_once()
                failing = False
            except Exception:  # e.g. the database is unreachable or not migrated yet (logged)
                if not failing:  # log a run of identical failures once
                    log.exception("export worker: claiming a job failed (retrying every 5 s)")
                failing = True
                self._stop.wait(max(5.0, self.poll_interval))
                continue
            if ran is None:
                self._stop.wait(self.poll_interval)

    def start(self) -> ExportWorker:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=f"export-worker-{self.owner}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None


def start_worker(state: Any) -> ExportWorker:
    """Start the export worker of a server process (``state`` is the app's ServerState)."""
    settings = state.settings
    return ExportWorker(
        state.db,
        export_dir(settings),
        poll_interval=poll_interval(settings),
        lease_seconds=lease_seconds(settings),
    ).start()
