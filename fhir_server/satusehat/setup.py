"""Wiring: the facilities (environment and ``fhir-server satusehat facilities``) and the sync
worker in the server's lifespan. Sync is off when no facility is configured."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from fhir_server.config import Settings
from fhir_server.satusehat import operations as _operations  # noqa: F401  (registers $satusehat-status, $satusehat-sync)
from fhir_server.satusehat import store
from fhir_server.satusehat.facility import Facility, from_settings
from fhir_server.satusehat.process import SyncProcess
from fhir_server.satusehat.worker import SatusehatWorker
from fhir_server.storage.db import Database


def facilities(settings: Settings, db: Database) -> list[Facility]:
    """The environment's facility (if set) and those stored by the CLI."""
    found = [f for f in [from_settings(settings)] if f is not None]
    try:
        with db.read() as conn:
            rows = store.facilities(conn)
    except SQLAlchemyError:  # not migrated yet: the stored ones count from the next start
        rows = []
    for r in rows:
        found.append(Facility(r["name"], r["organization_id"], r["client_id"], r["client_secret"], r["url"], r["local_org"]))
    return found


def new_worker(state: Any, **overrides: Any) -> SatusehatWorker | None:
    """A worker for the app's ``state`` (None: no facility); ``overrides``: tests and the CLI."""
    s: Settings = state.settings
    found = overrides.pop("facilities", None) or facilities(s, state.db)
    if not found:
        return None
    options: dict[str, Any] = {
        "base": s.base_url or "http://localhost:8080/fhir",
        "poll_interval": s.satusehat_poll_interval,
        "lease_seconds": s.satusehat_lease_seconds,
        "retry_base": s.satusehat_retry_base,
        "retry_max": s.satusehat_retry_max,
        "negative_ttl": s.satusehat_negative_cache_seconds,
        "timeout": s.satusehat_timeout,
        "concurrency": s.satusehat_concurrency,
    }
    options.update(overrides)
    return SatusehatWorker(state.db, state.pipeline, found, **options)


def start_satusehat_worker(state: Any) -> SatusehatWorker | SyncProcess | None:
    """The server's sync worker: a child process of its own (``FHIR_SATUSEHAT_WORKER_PROCESS``,
    the default: off the event loop that serves requests) or a task on this event loop."""
    worker: SatusehatWorker | SyncProcess | None
    if state.settings.satusehat_worker_process:
        worker = SyncProcess.start(state.settings) if facilities(state.settings, state.db) else None
    else:
        worker = new_worker(state)
        if worker is not None:
            worker.start()
    state.satusehat_worker = worker
    return worker
