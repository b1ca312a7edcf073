"""What keeps a migrating hospital's ingest fast without changing an answer (issue 20): a
transaction resolves each distinct conditional reference once, and its PUT entries write their
version and index rows together at the end instead of one resource at a time. SQLite and
PostgreSQL (the ``client`` fixture)."""

from __future__ import annotations

import orjson

from fhir_server.service import conditional
from fhir_server.storage import deferred

NPI = "http://hl7.org/fhir/sid/us-npi"
FHIR_JSON = {"Content-Type": "application/fhir+json"}


def _practitioner(n: int) -> dict:
    return {
        "resourceType": "Practitioner",
        "id": f"pr{n}",
        "identifier": [{"system": NPI, "value": f"99{n}"}],
        "name": [{"family": f"D{n}"}],
    }


def _encounter(n: int, practitioner: int) -> dict:
    return {
        "resourceType": "Encounter",
        "id": f"enc{n}",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "participant": [{"individual": {"reference": f"Practitioner?identifier={NPI}|99{practitioner}"}}],
    }


def _puts(resources: list[dict]) -> dict:
    entries = [{"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in resources]
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def test_each_distinct_conditional_reference_is_resolved_once_per_transaction(client, monkeypatch):
    assert client.post("/fhir", json=_puts([_practitioner(n) for n in range(3)]), headers=FHIR_JSON).status_code == 200
    searched: list[str] = []
    real = conditional.find_matches

    def counting(conn, res_type, params, base):
        searched.append(f"{res_type}?{params}")
        return real(conn, res_type, params, base)

    monkeypatch.setattr(conditional, "find_matches", counting)
    encounters = [_encounter(n, n % 3) for n in range(12)]  # 12 references to 3 Practitioners
    r = client.post("/fhir", json=_puts(encounters), headers=FHIR_JSON)
    assert r.status_code == 200, r.text
    assert len(searched) == 3 and len(set(searched)) == 3
    for n in range(12):  # every entry got its own practitioner, not a neighbour's
        body = client.get(f"/fhir/Encounter/enc{n}").json()
        assert body["participant"][0]["individual"]["reference"] == f"Practitioner/pr{n % 3}"


def test_a_failing_conditional_reference_still_fails_the_whole_transaction(client):
    assert client.post("/fhir", json=_puts([_practitioner(0)]), headers=FHIR_JSON).status_code == 200
    r = client.post("/fhir", json=_puts([_encounter(0, 0), _encounter(1, 0), _encounter(2, 7)]), headers=FHIR_JSON)
    assert r.status_code == 412
    assert "matches no resource" in r.text
    assert client.get("/fhir/Encounter/enc0").status_code == 404  # nothing of it was written


def test_put_entries_write_their_index_rows_together_and_are_found(client, monkeypatch):
    flushes: list[bool] = []
    real = deferred.flush

    def counting(conn, *, parents_only=False):
        if deferred.pending(conn):
            flushes.append(parents_only)
        return real(conn, parents_only=parents_only)

    monkeypatch.setattr(deferred, "flush", counting)
    patients = [{"resourceType": "Patient", "id": f"p{n}", "name": [{"family": f"Batch{n:02d}"}], "gender": "female"} for n in range(20)]
    r = client.post("/fhir", json=_puts(patients), headers={**FHIR_JSON, "Prefer": "return=minimal"})
    assert r.status_code == 200, r.text
    # one full flush for the whole Bundle (at the commit), not one per entry
    assert flushes.count(False) <= 2, flushes
    monkeypatch.undo()
    for n in range(20):  # and every resource's index rows are there
        found = client.get(f"/fhir/Patient?family=Batch{n:02d}&_elements=id").json()
        assert [e["resource"]["id"] for e in found.get("entry", [])] == [f"p{n}"]
    history = client.get("/fhir/Patient/p7/_history").json()
    assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["1"]


def test_an_update_in_the_same_group_commit_sees_the_rows_written_before_it(client):
    """Two PUTs of one resource in one batch Bundle (two writes, one after the other): the second
    replaces the first one's index rows, so a search finds only the second's values."""
    first = {"resourceType": "Patient", "id": "twice", "name": [{"family": "Pertama"}]}
    second = {"resourceType": "Patient", "id": "twice", "name": [{"family": "Kedua"}]}
    batch = {**_puts([first, second]), "type": "batch"}
    r = client.post("/fhir", content=orjson.dumps(batch), headers=FHIR_JSON)
    assert r.status_code == 200, r.text
    assert [e["response"]["status"][:3] for e in r.json()["entry"]] == ["201", "200"]
    assert client.get("/fhir/Patient?family=Pertama").json().get("entry", []) == []
    assert client.get("/fhir/Patient?family=Kedua").json()["entry"][0]["resource"]["id"] == "twice"
