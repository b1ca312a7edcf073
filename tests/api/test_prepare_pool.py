"""Large transactions prepared on other cores (FHIR_PREPARE_WORKERS) and references rewritten
before the write lock: the same answers, the same index, the same errors as in one process."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhir_server.app import create_app
from fhir_server.config import Settings
from fhir_server.service.access import OPEN
from tests.conftest import BACKENDS, _empty_tables, database

NPI = "http://hl7.org/fhir/sid/us-npi"


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _client(backend: str, folder: Any, workers: int) -> Iterator[TestClient]:
    with database(backend, folder) as url:
        settings = Settings(database_url=url, base_url="http://testserver/fhir", prepare_workers=workers, audit=False)
        with TestClient(create_app(settings)) as client:
            yield client


@pytest.fixture(scope="module")
def pooled_app(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    yield from _client(backend, tmp_path_factory.mktemp("pooled"), 2)


@pytest.fixture(scope="module")
def single_app(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    yield from _client(backend, tmp_path_factory.mktemp("single"), 0)


@pytest.fixture
def pooled(pooled_app: TestClient) -> TestClient:
    _empty_tables(pooled_app)
    return pooled_app


@pytest.fixture
def single(single_app: TestClient) -> TestClient:
    _empty_tables(single_app)
    return single_app


def _bundle(patients: int, *, bad: int | None = None) -> dict[str, Any]:
    """PUTs of Patients and their Encounters, each naming its Practitioner by a conditional
    reference (as Synthea does) and its Patient by a fullUrl."""
    entries: list[dict[str, Any]] = []
    for n in range(patients):
        pid = f"p{n}"
        patient: dict[str, Any] = {"resourceType": "Patient", "id": pid, "name": [{"family": f"Santoso{n}"}]}
        if n == bad:
            patient["birthDate"] = "1990-13-45"  # no such date
        entries.append(
            {"fullUrl": f"urn:uuid:{uuid.UUID(int=n)}", "resource": patient, "request": {"method": "PUT", "url": f"Patient/{pid}"}}
        )
        encounter = {
            "resourceType": "Encounter",
            "id": f"e{n}",
            "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": f"urn:uuid:{uuid.UUID(int=n)}"},
            "participant": [{"individual": {"reference": f"Practitioner?identifier={NPI}|{n % 3}"}}],
        }
        entries.append({"resource": encounter, "request": {"method": "PUT", "url": f"Encounter/e{n}"}})
    entries.append(
        {
            "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"}},
            "request": {"method": "POST", "url": "Observation"},
        }
    )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _practitioners(client: TestClient) -> dict[int, str]:
    ids = {}
    for n in range(3):
        r = client.post("/fhir/Practitioner", json={"resourceType": "Practitioner", "identifier": [{"system": NPI, "value": str(n)}]})
        assert r.status_code == 201, r.text
        ids[n] = r.json()["id"]
    return ids


def _statuses(response: Any) -> list[str]:
    return [e["response"]["status"] for e in response.json()["entry"]]


def test_a_pooled_transaction_answers_and_indexes_as_one_process_does(pooled: TestClient, single: TestClient) -> None:
    bundle = _bundle(20)
    pool = pooled.app.state.fhir.services.bundles.prepare_pool
    assert pool is not None
    before = pool.prepared
    for client in (pooled, single):
        practitioners = _practitioners(client)
        r = client.post("/fhir", json=copy.deepcopy(bundle))
        assert r.status_code == 200, r.text
        assert _statuses(r)[:40] == ["201 Created"] * 40
        # the rewritten references were indexed: search by them
        for n in range(3):
            found = client.get("/fhir/Encounter", params={"participant": f"Practitioner/{practitioners[n]}", "_count": 50}).json()
            assert sorted(e["resource"]["id"] for e in found["entry"]) == sorted(f"e{i}" for i in range(20) if i % 3 == n)
        assert client.get("/fhir/Encounter", params={"subject": "Patient/p7"}).json()["total"] == 1
        stored = client.get("/fhir/Encounter/e4").json()
        assert stored["subject"] == {"reference": "Patient/p4"}
        assert stored["participant"][0]["individual"] == {"reference": f"Practitioner/{practitioners[1]}"}
        # the POSTed entry got one id, the one it is stored and indexed under
        location = r.json()["entry"][40]["response"]["location"]
        assert client.get(f"/fhir/{location.split('/_history')[0]}").status_code == 200
        assert client.get("/fhir/Observation", params={"code:text": "x"}).json()["total"] == 1
    assert pool.prepared - before == 41  # every write of the Bundle, on the workers
    assert single.app.state.fhir.services.bundles.prepare_pool is None


def test_an_invalid_entry_fails_the_pooled_transaction_as_it_fails_one_process(pooled: TestClient, single: TestClient) -> None:
    answers = []
    for client in (pooled, single):
        _practitioners(client)
        r = client.post("/fhir", json=_bundle(20, bad=17))
        answers.append((r.status_code, r.json()))
        assert client.get("/fhir/Patient", params={"_summary": "count"}).json()["total"] == 0  # nothing written
    assert answers[0] == answers[1]
    status, outcome = answers[0]
    assert status == 400
    assert any("Bundle.entry[34]" in (i.get("diagnostics") or "") for i in outcome["issue"]), outcome


def test_a_reference_resolved_before_the_lock_is_resolved_again_under_it(single: TestClient) -> None:
    """Another client changes what a conditional reference matches between the early rewrite
    and the write lock: the transaction uses what holds under the lock."""
    client = single
    state = client.app.state.fhir
    practitioners = _practitioners(client)
    bundles = state.services.bundles
    from fhir_server.service.transaction import parse_entry

    raw = _bundle(2)["entry"]
    base = "http://testserver/fhir"
    entries = [parse_entry(base, i, e) for i, e in enumerate(raw)]
    early = bundles._rewrite_early(base, entries, OPEN)
    assert early is not None and early.resolved
    assert entries[1].resource["participant"][0]["individual"]["reference"] == f"Practitioner/{practitioners[0]}"
    # meanwhile Practitioner 0's identifier moves to a new Practitioner
    client.put(f"/fhir/Practitioner/{practitioners[0]}", json={"resourceType": "Practitioner", "id": practitioners[0]})
    moved = client.post("/fhir/Practitioner", json={"resourceType": "Practitioner", "identifier": [{"system": NPI, "value": "0"}]}).json()[
        "id"
    ]
    import asyncio

    asyncio.run(bundles._prepare(entries, index=True))
    with state.db.write() as conn:
        outcomes = bundles._transaction_in(conn, base, entries, None, OPEN, None, early)
    assert [o.status for o in outcomes][:4] == [201, 201, 201, 201]
    stored = client.get("/fhir/Encounter/e0").json()
    assert stored["participant"][0]["individual"] == {"reference": f"Practitioner/{moved}"}
    found = client.get("/fhir/Encounter", params={"participant": f"Practitioner/{moved}"}).json()
    assert [e["resource"]["id"] for e in found["entry"]] == ["e0"]
    assert client.get("/fhir/Encounter", params={"participant": f"Practitioner/{practitioners[0]}"}).json()["total"] == 0
