"""Property-based fuzzing of every operation in the app's own OpenAPI (schemathesis, in-process).

Bounded: a fixed number of generated requests per operation (``FHIR_FUZZ_EXAMPLES``, default 30,
derandomized; set ``FHIR_FUZZ_SEED`` for a different, random-but-reproducible run). Required: no 5xx;
every error is an OperationOutcome; the server still answers afterwards. (SQLite here; the
hand-written corpus in test_hostile_input.py runs on both databases.)
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, seed, settings

from fhir_server.app import create_app
from fhir_server.config import Settings
from fhir_server.storage import migrate

EXAMPLES_PER_OPERATION = int(os.environ.get("FHIR_FUZZ_EXAMPLES", "30"))
SEED = os.environ.get("FHIR_FUZZ_SEED")

_DIR = Path(tempfile.mkdtemp(prefix="fhir-fuzz-"))
app = create_app(Settings(database_url=f"sqlite:///{_DIR / 'fuzz.sqlite3'}", audit=False, export_worker=False,
                          export_dir=str(_DIR / "export")))
migrate.upgrade(app.state.fhir.db.engine)
schema = schemathesis.openapi.from_asgi("/openapi.json", app)
CALLS: dict[str, int] = {"requests": 0, "client_errors": 0}


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck),
          derandomize=SEED is None)
@seed(int(SEED or 0))
def test_generated_requests_never_cause_a_server_error(case):
    response = case.call()
    CALLS["requests"] += 1
    CALLS["client_errors"] += response.status_code >= 400
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:300]}"
    content_type = response.headers.get("content-type") or ""
    content_type = content_type[0] if isinstance(content_type, list) else content_type
    if response.status_code >= 400 and content_type.startswith("application/fhir+json"):
        assert response.json()["resourceType"] == "OperationOutcome"


def test_the_server_still_answers_after_fuzzing():
    from fastapi.testclient import TestClient

    print(f"schemathesis: {CALLS['requests']} generated requests, {CALLS['client_errors']} answered 4xx, none 5xx")
    with TestClient(app) as client:
        assert client.get("/fhir/metadata").status_code == 200
