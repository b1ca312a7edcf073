"""Fixtures of the Bulk Data tests: the app with the bulk routes in front (as create_app will
declare them), a fast export worker, on SQLite and PostgreSQL, emptied between tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from fhir_server.app import create_app
from fhir_server.bulk.routes import router as bulk_router
from fhir_server.bulk.worker import ExportWorker
from fhir_server.config import Settings
from tests.conftest import BACKENDS, PgSchema, empty_tables
from tests.waiting import wait_until

BASE = "http://testserver/fhir"
ASYNC = {"Prefer": "respond-async", "Accept": "application/fhir+json"}


@dataclass(frozen=True)
class BulkSettings(Settings):
    """Settings with the export fields (the same names the server's Settings carries)."""

    export_dir: str = ""
    export_poll_interval: float = 0.05
    export_lease_seconds: float = 5.0
    #: the tests run workers themselves
    export_worker: bool = False


def install_bulk_routes(app) -> None:
    """Put the bulk routes first, unless create_app already included them (then: nothing to do).

    FastAPI >= 0.16x keeps an included router as one ``_IncludedRouter`` entry
    (``original_router``); older versions copy its routes (``path``)."""
    for r in app.router.routes:
        if getattr(r, "original_router", None) is bulk_router or getattr(r, "path", None) == "/fhir/$export":
            return
    before = len(app.router.routes)
    app.include_router(bulk_router)
    added = app.router.routes[before:]
    del app.router.routes[before:]
    app.router.routes[0:0] = added


@pytest.fixture(scope="session", params=BACKENDS)
def bulk_app(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[TestClient]:
    schema = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('bulkdb') / 'bulk.sqlite3'}"
    else:
        schema = PgSchema()
        url = schema.url
    export_dir = tmp_path_factory.mktemp("export")
    settings = BulkSettings(database_url=url, base_url=BASE, export_dir=str(export_dir))
    app = create_app(settings)
    install_bulk_routes(app)
    try:
        with TestClient(app) as client:
            yield client
    finally:
        if schema is not None:
            schema.drop()


@pytest.fixture
def bulk(bulk_app: TestClient) -> TestClient:
    """The bulk app on an empty database (no resources, no jobs)."""
    empty_tables(bulk_app.app.state.fhir.db.engine)
    return bulk_app


@pytest.fixture
def export_dir(bulk: TestClient) -> Path:
    return Path(bulk.app.state.fhir.settings.export_dir)


@pytest.fixture
def worker(bulk: TestClient, export_dir: Path) -> Iterator[ExportWorker]:
    """A running export worker polling every 50 ms. Its lease (the server's default, 60 s) does
    not run out while a loaded machine holds it up: no test here wants it taken over."""
    w = ExportWorker(bulk.app.state.fhir.db, export_dir, poll_interval=0.05, lease_seconds=60.0, owner="test-worker")
    w.start()
    try:
        yield w
    finally:
        w.stop(timeout=60)


def wait_done(client: TestClient, status_url: str, timeout: float = 60.0):
    """Poll the status URL until it is no longer 202; the final response (AssertionError after ``timeout`` s)."""

    def finished():
        resp = client.get(status_url)
        if resp.status_code == 202:
            assert resp.headers.get("X-Progress")
            return None
        return (resp,)  # true whatever the response

    return wait_until(finished, timeout=timeout, interval=0.05, message=f"{status_url} no longer 202")[0]


class FakeClock:
    """The export jobs' clock (``jobs.now_us``): the real one plus what the test moved it on by,
    so a lease runs out when the test says so instead of after a sleep."""

    def __init__(self) -> None:
        self.offset_us = 0

    def __call__(self) -> int:
        from fhir_server.timeutil import now_us

        return now_us() + self.offset_us

    def advance(self, seconds: float) -> None:
        self.offset_us += int(seconds * 1_000_000)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """Lease expiry without waiting: leases, heartbeats and claims read this clock."""
    from fhir_server.bulk import jobs

    fake = FakeClock()
    monkeypatch.setattr(jobs, "now_us", fake)
    return fake
