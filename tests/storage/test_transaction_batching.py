"""What keeps a migrating hospital's ingest fast without changing an answer (issue 20): a
transaction resolves its conditional references by one search per type, and its PUT entries write their
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


def test_the_conditional_references_of_a_transaction_are_resolved_by_one_search_per_type(client, monkeypatch):
    assert client.post("/fhir", json=_puts([_practitioner(n) for n in range(3)]), headers=FHIR_JSON).status_code == 200
    searched: list[tuple[str, list]] = []
    real = conditional.run_search

    def counting(conn, res_type, params, **kw):
        searched.append((res_type, params))
        return real(conn, res_type, params, **kw)

    monkeypatch.setattr(conditional, "run_search", counting)
    encounters = [_encounter(n, n % 3) for n in range(12)]  # 12 references to 3 Practitioners
    r = client.post("/fhir", json=_puts(encounters), headers=FHIR_JSON)
    assert r.status_code == 200, r.text
    # one search before the write lock (so the index rows are extracted there), asking for all
    # three; none under it, as nothing was written in between (a test below)
    assert len(searched) == 1
    for res_type, params in searched:
        assert res_type == "Practitioner"
        assert sorted(dict(params)["identifier"].split(",")) == [f"{NPI}|99{n}" for n in range(3)]
    for n in range(12):  # every entry got its own practitioner, not a neighbour's
        body = client.get(f"/fhir/Encounter/enc{n}").json()
        assert body["participant"][0]["individual"]["reference"] == f"Practitioner/pr{n % 3}"


def test_a_shared_identifier_fails_its_reference_among_others_resolved_together(client):
    twin = {**_practitioner(1), "id": "twin"}  # a second Practitioner with identifier 991
    assert client.post("/fhir", json=_puts([_practitioner(0), _practitioner(1), twin]), headers=FHIR_JSON).status_code == 200
    r = client.post("/fhir", json=_puts([_encounter(0, 0), _encounter(1, 1)]), headers=FHIR_JSON)
    assert r.status_code == 412
    assert "Bundle.entry[1]" in r.text and "matches more than one resource" in r.text
    assert client.get("/fhir/Encounter/enc0").status_code == 404  # nothing of it was written


def test_one_practitioner_found_by_two_of_its_identifiers_in_one_search(client):
    both = {**_practitioner(0), "identifier": [{"system": NPI, "value": "990"}, {"system": NPI, "value": "995"}]}
    assert client.post("/fhir", json=_puts([both]), headers=FHIR_JSON).status_code == 200
    r = client.post("/fhir", json=_puts([_encounter(0, 0), _encounter(1, 5)]), headers=FHIR_JSON)
    assert r.status_code == 200, r.text
    for n in range(2):
        assert client.get(f"/fhir/Encounter/enc{n}").json()["participant"][0]["individual"]["reference"] == "Practitioner/pr0"


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


def test_puts_of_stored_and_new_resources_read_their_current_rows_together(client):
    """PostgreSQL reads (and locks) the current rows of a Bundle's PUTs in one statement per type:
    versions and contents come out as one at a time would make them."""
    stored = [{"resourceType": "Patient", "id": f"s{n}", "name": [{"family": "Old"}]} for n in range(10)]
    assert client.post("/fhir", json=_puts(stored), headers=FHIR_JSON).status_code == 200
    updated = [{**p, "name": [{"family": "New"}]} for p in stored[:5]] + stored[5:]  # 5 changed, 5 unchanged
    fresh = [{"resourceType": "Patient", "id": f"n{n}", "name": [{"family": "New"}]} for n in range(5)]
    r = client.post("/fhir", json=_puts(updated + fresh), headers=FHIR_JSON)
    assert r.status_code == 200, r.text
    statuses = [(e["response"]["status"], e["response"]["etag"]) for e in r.json()["entry"]]
    assert statuses == [("200 OK", 'W/"2"')] * 5 + [("200 OK", 'W/"1"')] * 5 + [("201 Created", 'W/"1"')] * 5
    assert client.get("/fhir/Patient", params={"family": "New", "_summary": "count"}).json()["total"] == 10


def test_a_conditional_delete_and_a_put_of_the_same_resource_in_one_bundle(client):
    """The DELETE runs first (the spec's order): the PUT then finds the row it deleted, not the one
    read before the entries ran, and brings the resource back as its next version."""
    patient = {"resourceType": "Patient", "id": "d1", "identifier": [{"system": "urn:x", "value": "d1"}]}
    other = {"resourceType": "Patient", "id": "d2"}
    assert client.post("/fhir", json=_puts([patient, other]), headers=FHIR_JSON).status_code == 200
    bundle = _puts([patient, {**other, "gender": "male"}])  # d1 sent as it is stored
    bundle["entry"].insert(0, {"request": {"method": "DELETE", "url": "Patient?identifier=urn:x|d1"}})
    r = client.post("/fhir", json=bundle, headers=FHIR_JSON)
    assert r.status_code == 200, r.text
    assert [e["response"]["status"] for e in r.json()["entry"]] == ["204 No Content", "201 Created", "200 OK"]
    back = client.get("/fhir/Patient/d1")
    assert back.status_code == 200 and back.json()["meta"]["versionId"] == "3"


def test_a_reference_resolved_before_the_write_lock_is_resolved_again_under_it(client):
    """Another client moves what a conditional reference matches between the early rewrite and
    the write lock: the transaction writes what holds under the lock, and indexes that."""
    from fhir_server.service.access import OPEN
    from fhir_server.service.transaction import parse_entry

    assert client.post("/fhir", json=_puts([_practitioner(0)]), headers=FHIR_JSON).status_code == 200
    state = client.app.state.fhir
    bundles = state.services.bundles
    base = "http://testserver/fhir"
    entries = [parse_entry(base, i, e) for i, e in enumerate(_puts([_encounter(0, 0), _encounter(1, 0)])["entry"])]
    early = bundles._rewrite_early(base, entries, OPEN)
    assert early is not None and early.resolved
    assert entries[0].resource["participant"][0]["individual"]["reference"] == "Practitioner/pr0"
    # meanwhile the identifier moves from pr0 to a new Practitioner
    moved = {**_practitioner(0), "id": "moved"}
    client.put("/fhir/Practitioner/pr0", json={"resourceType": "Practitioner", "id": "pr0"}, headers=FHIR_JSON)
    assert client.post("/fhir", json=_puts([moved]), headers=FHIR_JSON).status_code == 200
    bundles._prepare(entries, early)

    async def write() -> list:
        return await state.pipeline.writes.run(
            lambda conn: bundles._transaction_in(conn, base, entries, None, OPEN, None, early), alone=True
        )

    outcomes = client.portal.call(write)  # the app's own loop runs its writes (group commit)
    assert [o.status for o in outcomes] == [201, 201]
    for n in range(2):
        assert client.get(f"/fhir/Encounter/enc{n}").json()["participant"][0]["individual"]["reference"] == "Practitioner/moved"
    found = client.get("/fhir/Encounter", params={"participant": "Practitioner/moved"}).json()
    assert sorted(e["resource"]["id"] for e in found["entry"]) == ["enc0", "enc1"]
    assert client.get("/fhir/Encounter", params={"participant": "Practitioner/pr0", "_summary": "count"}).json()["total"] == 0


def test_references_resolved_before_the_lock_are_not_searched_again_when_nothing_was_written(client, monkeypatch):
    """The change log's last number, read before the early searches, is the same under the lock:
    nothing was committed in between, so the answers still hold and are not asked again (they were,
    one search per referenced type, ~4 % of a Synthea Bundle's time). A write in between makes
    them asked again (the test above)."""
    from fhir_server.service.conditional import ConditionalService

    assert client.post("/fhir", json=_puts([_practitioner(0)]), headers=FHIR_JSON).status_code == 200
    searched: list[str] = []
    real = ConditionalService.resolve_ids

    def spy(self, conn, res_type, conditions, base, **kwargs):
        searched.append(res_type)
        return real(self, conn, res_type, conditions, base, **kwargs)

    monkeypatch.setattr(ConditionalService, "resolve_ids", spy)
    r = client.post("/fhir", json=_puts([_encounter(0, 0), _encounter(1, 0)]), headers=FHIR_JSON)
    assert r.status_code == 200, r.text
    assert searched == ["Practitioner"]  # before the lock only
    assert client.get("/fhir/Encounter/enc1").json()["participant"][0]["individual"]["reference"] == "Practitioner/pr0"
