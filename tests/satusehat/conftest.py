"""Fixtures of the SATUSEHAT sync tests: the simulator on 127.0.0.1, the app configured against it
with a fast worker, on SQLite and PostgreSQL; helpers that build a visit."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhir_server.app import create_app
from fhir_server.config import Settings
from tests.conftest import BACKENDS, database, empty_tables
from tests.satusehat.simulator import CLIENT_ID, CLIENT_SECRET, ORG, Simulator

BASE = "http://testserver/fhir"
NIK = "https://fhir.kemkes.go.id/id/nik"
PATIENT_NIK = "9271060312000001"
PATIENT_IHS = "P02478375538"
DOCTOR_NIK = "7209061211900001"
DOCTOR_IHS = "10009880728"


def settings(url: str, sim_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": url,
        "base_url": BASE,
        "export_worker": False,
        "subscription_worker": False,
        "satusehat_url": sim_url,
        "satusehat_client_id": CLIENT_ID,
        "satusehat_client_secret": CLIENT_SECRET,
        "satusehat_organization_id": ORG,
        "satusehat_poll_interval": 0.02,
        "satusehat_lease_seconds": 3.0,
        "satusehat_retry_base": 0.05,
        "satusehat_retry_max": 0.3,
        "satusehat_timeout": 0.8,
        # the worker on the app's event loop, where the tests reach it (test_process.py: the child process)
        "satusehat_worker_process": False,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="session")
def sim_session() -> Iterator[Simulator]:
    sim = Simulator().start()
    yield sim
    sim.stop()


@pytest.fixture
def sim(sim_session: Simulator) -> Simulator:
    sim_session.clear()
    sim_session.latency = 0.0
    return sim_session


@pytest.fixture(scope="session", params=BACKENDS)
def sync_app(request: pytest.FixtureRequest, tmp_path_factory, sim_session: Simulator) -> Iterator[TestClient]:
    with database(request.param, tmp_path_factory.mktemp("ssdb")) as url, TestClient(create_app(settings(url, sim_session.url))) as client:
        yield client


@pytest.fixture
def fhir(sync_app: TestClient, sim: Simulator) -> Iterator[TestClient]:
    _clear(sync_app)
    yield sync_app
    # the shared app's worker must not reach the (shared) simulator during the next test, which may
    # count calls of another app: its work is taken away, then what it had in flight is waited for
    _clear(sync_app)
    sync_app.portal.call(sync_app.app.state.fhir.satusehat_worker.wait_idle)  # type: ignore[union-attr]
    _clear(sync_app)


def _clear(app: TestClient) -> None:
    empty_tables(app.app.state.fhir.db.engine)  # type: ignore[attr-defined]


def put(client: TestClient, resource: dict[str, Any]) -> dict[str, Any]:
    r = client.put(f"/fhir/{resource['resourceType']}/{resource['id']}", json=resource)
    assert r.status_code in (200, 201), r.text
    return r.json()


def patient(pid: str = "p1", nik: str | None = PATIENT_NIK) -> dict[str, Any]:
    p: dict[str, Any] = {"resourceType": "Patient", "id": pid, "name": [{"family": "Putra"}]}
    if nik:
        p["identifier"] = [{"system": NIK, "value": nik}]
    return p


def doctor(did: str = "d1") -> dict[str, Any]:
    return {"resourceType": "Practitioner", "id": did, "identifier": [{"system": NIK, "value": DOCTOR_NIK}], "name": [{"text": "dr. A"}]}


def location(lid: str = "poli1") -> dict[str, Any]:
    return {
        "resourceType": "Location",
        "id": lid,
        "name": "Poli Umum",
        "status": "active",
        "position": {"latitude": -6.2, "longitude": 106.8},
    }


def encounter(
    eid: str = "e1", pid: str = "p1", status: str = "finished", end: str | None = "2026-11-20T09:30:00+07:00", **extra: Any
) -> dict[str, Any]:
    period = {"start": "2026-11-20T09:00:00+07:00"}
    if end:
        period["end"] = end
    e = {
        "resourceType": "Encounter",
        "id": eid,
        "status": status,
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "ambulatory"},
        "subject": {"reference": f"Patient/{pid}"},
        "participant": [{"individual": {"reference": "Practitioner/d1"}}],
        "period": period,
        "location": [{"location": {"reference": "Location/poli1"}}],
    }
    e.update(extra)
    return e


def condition(cid: str, eid: str = "e1", pid: str = "p1", code: str = "J06.9") -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": cid,
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "encounter-diagnosis"}]}],
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": code}]},
        "subject": {"reference": f"Patient/{pid}"},
        "encounter": {"reference": f"Encounter/{eid}"},
    }


def observation(oid: str, eid: str = "e1", pid: str = "p1", loinc: str = "8867-4", value: float = 80) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": loinc}]},
        "subject": {"reference": f"Patient/{pid}"},
        "encounter": {"reference": f"Encounter/{eid}"},
        "effectiveDateTime": "2026-11-20T09:10:00+07:00",
        "valueQuantity": {"value": value, "unit": "beats/min", "system": "http://unitsofmeasure.org", "code": "/min"},
    }


def base_records(client: TestClient, pid: str = "p1") -> None:
    put(client, patient(pid))
    put(client, doctor())
    put(client, location())


def sync_status(client: TestClient, res_type: str, res_id: str) -> dict[str, Any]:
    r = client.get(f"/fhir/{res_type}/{res_id}/$satusehat-status")
    assert r.status_code == 200, r.text
    out: dict[str, Any] = {}
    for p in r.json()["parameter"]:
        out[p["name"]] = next((v for k, v in p.items() if k.startswith("value") or k == "resource"), None)
    return out


@pytest.fixture(params=BACKENDS)
def quiet(request: pytest.FixtureRequest, tmp_path, sim: Simulator) -> Iterator[tuple[TestClient, Settings]]:
    """An app on a fresh database without a sync worker (the tests run theirs) and its settings."""
    with database(request.param, tmp_path) as url:
        s = settings(url, sim.url, satusehat_worker=False)
        with TestClient(create_app(s)) as client:
            yield client, s
