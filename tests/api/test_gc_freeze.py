"""The server's worker processes freeze the start-up objects out of the garbage collector's
full collections (app.create_app(freeze_gc=True)); apps made elsewhere (tests) do not."""

from __future__ import annotations

import gc

from fastapi.testclient import TestClient

from fhir_server.app import create_app
from fhir_server.config import Settings


def _frozen_after_startup(tmp_path, freeze: bool) -> int:
    gc.unfreeze()
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'f.sqlite3'}", export_worker=False), freeze_gc=freeze)
    try:
        with TestClient(app) as client:
            assert client.get("/fhir/metadata").status_code == 200
            return gc.get_freeze_count()
    finally:
        gc.unfreeze()


def test_server_workers_freeze_the_startup_objects(tmp_path):
    assert _frozen_after_startup(tmp_path, True) > 10_000  # modules, models, tables, the app


def test_other_apps_do_not(tmp_path):
    assert _frozen_after_startup(tmp_path, False) == 0


def test_server_workers_build_the_common_types_before_freezing(tmp_path, monkeypatch):
    """service/warm.py runs at start-up in a server worker (its models and plans then frozen
    with the rest), not in other apps (tests would pay it on every app)."""
    import fhir_server.app as app_module

    calls: list[int] = []
    monkeypatch.setattr(app_module, "warm_up", lambda: calls.append(gc.get_freeze_count()))
    _frozen_after_startup(tmp_path, False)
    assert calls == []
    _frozen_after_startup(tmp_path, True)
    assert calls == [0]  # before the freeze


def test_warm_up_builds_each_types_model_and_plan():
    from fhir_server.model import validate
    from fhir_server.search import extract
    from fhir_server.service.warm import COMMON_TYPES, warm_up

    validate._r4b_model.cache_clear()
    extract._plan.cache_clear()
    warm_up(("Observation", "Coverage"))
    assert validate._r4b_model.cache_info().currsize == 2
    assert extract._plan.cache_info().currsize == 2
    assert validate._r4b_model("Observation") is not None
    assert "Patient" in COMMON_TYPES and "AuditEvent" in COMMON_TYPES


def test_warm_up_builds_the_datatypes_a_type_may_hold():
    """fhir_core imports a nested datatype's model on the first value that has one: a Patient's
    first ``telecom`` paid for ContactPoint inside a request. After the warm-up, validating a
    Patient with every kind of value imports nothing more (a fresh interpreter, to see imports)."""
    import subprocess
    import sys

    script = """
import sys
from fhir_server.model import validate
validate.warm_up("Patient")
before = {m for m in sys.modules if m.startswith("fhir.resources")}
assert "fhir.resources.R4B.contactpoint" in before, sorted(before)
patient = {"resourceType": "Patient", "telecom": [{"system": "phone", "value": "1"}],
    "extension": [{"url": "http://x", "valueQuantity": {"value": 1}}],
    "address": [{"period": {"start": "2020"}}], "photo": [{"contentType": "image/png"}],
    "contact": [{"name": {"family": "A"}, "organization": {"reference": "Organization/1"}}],
    "communication": [{"language": {"coding": [{"code": "id"}]}}]}
assert validate.model_issues(patient) == [], validate.model_issues(patient)
after = {m for m in sys.modules if m.startswith("fhir.resources")}
assert after == before, sorted(after - before)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
