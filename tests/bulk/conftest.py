"""Fixtures of the Bulk Data tests: the app with the bulk routes in front (as create_app will
declare them), a fast export worker, on SQLite and PostgreSQL, emptied between tests."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from fhir_server.app import create_app
from fhir_server.bulk.routes import router as bulk_router
from fhir_server.bulk.worker import ExportWorker
from fhir_server.config import Settings
from fhir_server.storage.tables import metadata
from tests.conftest import BACKENDS, PgSchema

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
    engine = bulk_app.app.state.fhir.db.engine
    existing = set(sa.inspect(engine).get_table_names())
    with engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            if table.name in existing:
                conn.execute(table.delete())
    return bulk_app


@pytest.fixture
def export_dir(bulk: TestClient) -> Path:
    return Path(bulk.app.state.fhir.settings.export_dir)


@pytest.fixture
def worker(bulk: TestClient, export_dir: Path) -> Iterator[ExportWorker]:
    """A running export worker polling every 50 ms."""
    w = ExportWorker(bulk.app.state.fhir.db, export_dir, poll_interval=0.05, lease_seconds=5.0, owner="test-worker")
    w.start()
    try:
        yield w
    finally:
        w.stop()


def wait_done(client: TestClient, status_url: str, timeout: float = 20.0):
    """Poll the status URL until it is no longer 202; the final response."""
    deadline = time.monotonic() + timeout
    while True:
        resp = client.get(status_url)
        if resp.status_code != 202 or time.monotonic() > deadline:
            return resp
        assert resp.headers.get("X-Progress")
        time.sleep(0.05)
