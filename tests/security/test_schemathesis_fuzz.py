"""Property-based fuzzing of every operation in the app's own OpenAPI (schemathesis, in-process).

Bounded: a fixed number of generated requests per operation (``FHIR_FUZZ_EXAMPLES``, default 30,
derandomized; set ``FHIR_FUZZ_SEED`` for a different, random-but-reproducible run). Required: no 5xx;
every error is an OperationOutcome; the server still answers afterwards. On SQLite, and on
PostgreSQL (a schema of its own, dropped at the end) when ``FHIR_TEST_POSTGRES_URL`` is set; the
hand-written corpus in test_hostile_input.py runs on both databases too.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, seed, settings

from fhir_server.app import create_app
from fhir_server.config import Settings
from fhir_server.storage import migrate
from tests.conftest import POSTGRES_URL, PgSchema

pytestmark = pytest.mark.slow  # about a thousand generated requests per database

EXAMPLES_PER_OPERATION = int(os.environ.get("FHIR_FUZZ_EXAMPLES", "30"))
SEED = os.environ.get("FHIR_FUZZ_SEED")

_DIR = Path(tempfile.mkdtemp(prefix="fhir-fuzz-"))
atexit.register(shutil.rmtree, _DIR, ignore_errors=True)  # its SQLite database (~4 MB a run) and exports


def _app(database_url: str, name: str) -> FastAPI:
    app = create_app(Settings(database_url=database_url, audit=False, export_worker=False, export_dir=str(_DIR / f"export-{name}")))
    migrate.upgrade(app.state.fhir.db.engine)
    return app


sqlite_app = _app(f"sqlite:///{_DIR / 'fuzz.sqlite3'}", "sqlite")
sqlite_schema = schemathesis.openapi.from_asgi("/openapi.json", sqlite_app)

_pg_schema = PgSchema() if POSTGRES_URL else None
if _pg_schema is not None:
    atexit.register(_pg_schema.drop)  # also when this module's tests are deselected
postgres_app = _app(_pg_schema.url, "postgresql") if _pg_schema is not None else None
# the same operations (one OpenAPI document); the calls go to the PostgreSQL app
postgres_schema = schemathesis.openapi.from_asgi("/openapi.json", postgres_app or sqlite_app)

CALLS: dict[str, dict[str, int]] = {b: {"requests": 0, "client_errors": 0} for b in ("sqlite", "postgresql")}
_SETTINGS = settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck), derandomize=SEED is None)


@pytest.fixture(scope="module", autouse=True)
def _dispose_the_postgres_app() -> Iterator[None]:
    yield
    if postgres_app is not None:
        postgres_app.state.fhir.db.dispose()


def _check(backend: str, case) -> None:
    response = case.call()
    CALLS[backend]["requests"] += 1
    CALLS[backend]["client_errors"] += response.status_code >= 400
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:300]}"
    content_type = response.headers.get("content-type") or ""
    content_type = content_type[0] if isinstance(content_type, list) else content_type
    if response.status_code >= 400 and content_type.startswith("application/fhir+json"):
        assert response.json()["resourceType"] == "OperationOutcome"


@sqlite_schema.parametrize()
@_SETTINGS
@seed(int(SEED or 0))
def test_generated_requests_never_cause_a_server_error(case):
    _check("sqlite", case)


@pytest.mark.skipif(postgres_app is None, reason="needs FHIR_TEST_POSTGRES_URL")
@postgres_schema.parametrize()
@_SETTINGS
@seed(int(SEED or 0))
def test_generated_requests_never_cause_a_server_error_on_postgresql(case):
    _check("postgresql", case)


def test_the_server_still_answers_after_fuzzing():
    from fastapi.testclient import TestClient

    for backend, app in (("sqlite", sqlite_app), ("postgresql", postgres_app)):
        if app is None:
            continue
        calls = CALLS[backend]
        print(f"schemathesis ({backend}): {calls['requests']} generated requests, {calls['client_errors']} answered 4xx, none 5xx")
        with TestClient(app) as client:
            assert client.get("/fhir/metadata").status_code == 200
