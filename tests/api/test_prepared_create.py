"""Creates validate (and a plain create also extracts its index rows) before the write
transaction (ResourceService.prepare_create): same verdicts, same errors in the same
order, same index, nothing written on failure."""

from __future__ import annotations

import copy

import orjson
import sqlalchemy as sa

from fhir_server.storage.tables import resource_versions

from .test_transaction import NIK, count, post_bundle, visit_bundle


def _versions(client) -> int:
    with client.app.state.fhir.db.read() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(resource_versions)).scalar_one()


PATIENT = {
    "resourceType": "Patient",
    "id": "ignored",
    "meta": {"tag": [{"system": "http://t", "code": "x"}]},
    "identifier": [{"use": "official", "system": NIK, "value": "3171234567890123"}],
    "name": [{"use": "official", "text": "Siti Nurhaliza", "family": "Nurhaliza", "given": ["Siti"]}],
    "gender": "female",
    "birthDate": "1985-03-12",
}


def test_plain_create_stores_the_index_of_what_it_stored(client):
    body = client.post("/fhir/Patient", json=PATIENT).json()
    assert body["id"] != "ignored"
    pid = body["id"]
    for query in (
        f"identifier={NIK}|3171234567890123",
        "family=nurhaliza",
        "gender=female",
        f"_id={pid}",
        "_tag=http://t|x",
        "birthdate=1985",
    ):
        hits = [e["resource"]["id"] for e in client.get(f"/fhir/Patient?{query}").json().get("entry", [])]
        assert hits == [pid], query


def test_invalid_create_is_4xx_and_writes_nothing(client):
    r = client.post("/fhir/Patient", json={"resourceType": "Patient", "gender": "boy"})
    assert r.status_code == 422 and r.json()["resourceType"] == "OperationOutcome"
    r = client.post("/fhir/Patient", json={"resourceType": "Patient", "unknownElement": 1})
    assert r.status_code == 400
    r = client.post("/fhir/Patient", json={"resourceType": "Encounter", "status": "finished"})
    assert r.status_code == 400
    r = client.post("/fhir/AuditEvent", json={"resourceType": "AuditEvent"})
    assert r.status_code == 405
    assert _versions(client) == 0


def test_the_first_failing_entry_in_processing_order_is_reported(client):
    bundle = visit_bundle()
    # entry 3 is invalid (validated ahead), entry 1 carries an unresolvable reference (found later):
    # the reference error is met first, as when validation ran inside the transaction
    bundle["entry"][3]["resource"]["status"] = "bogus"
    bundle["entry"][1]["resource"]["subject"] = {"reference": "urn:uuid:00000000-0000-4000-8000-00000000dead"}
    r = post_bundle(client, bundle)
    assert r.status_code == 400
    assert "Bundle.entry[1]" in r.json()["issue"][0]["diagnostics"]
    bundle["entry"][1]["resource"]["subject"] = {"reference": bundle["entry"][0]["fullUrl"]}
    r = post_bundle(client, bundle)
    assert r.status_code == 422
    assert "Bundle.entry[3]" in r.json()["issue"][0]["diagnostics"]
    for res_type in ("Patient", "Encounter", "Condition", "Coverage"):
        assert count(client, res_type) == 0, res_type
    assert _versions(client) == 0


def test_invalid_conditional_create_that_matches_is_not_validated_as_before(client):
    assert post_bundle(client, visit_bundle()).status_code == 200
    again = visit_bundle()
    again["entry"][0]["resource"]["gender"] = "boy"  # the match is returned; this body is never stored
    r = post_bundle(client, again)
    assert r.status_code == 200, r.text
    assert r.json()["entry"][0]["response"]["status"] == "200 OK"
    assert count(client, "Patient") == 1


def test_bundle_stores_rewritten_references_and_their_index(client):
    bundle = visit_bundle()
    sent = copy.deepcopy(bundle)
    out = post_bundle(client, bundle).json()
    pid = out["entry"][0]["response"]["location"].split("/")[1]
    cond_loc = out["entry"][2]["response"]["location"].rsplit("/_history", 1)[0]
    stored = client.get(f"/fhir/{cond_loc}").json()
    assert stored["subject"] == {"reference": f"Patient/{pid}"}
    assert stored["code"] == sent["entry"][2]["resource"]["code"]
    hits = client.get(f"/fhir/Condition?subject=Patient/{pid}").json()["entry"]
    assert [e["resource"]["id"] for e in hits] == [stored["id"]]


def test_batch_posts_still_validate_each_entry(client):
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"resource": {"resourceType": "Patient", "gender": "boy"}, "request": {"method": "POST", "url": "Patient"}},
            {"resource": {"resourceType": "Patient", "gender": "male"}, "request": {"method": "POST", "url": "Patient"}},
        ],
    }
    out = orjson.loads(post_bundle(client, bundle).content)
    assert [e["response"]["status"].split()[0] for e in out["entry"]] == ["422", "201"]


def test_bundle_of_puts_stores_the_reference_rows_of_what_it_stored(client):
    """A Bundle of PUTs (references rewritten before the lock, the one walk over them reused by
    index extraction): the stored reference rows, the ``-other`` ones of references at any
    depth included, are those extracted from the stored resource."""
    from fhir_server.search.extract import extract_index
    from fhir_server.storage.index_tables import INDEX_TABLES
    from fhir_server.storage.tables import resources

    org = {"resourceType": "Organization", "id": "org-w", "identifier": [{"system": "http://o", "value": "w1"}], "name": "W"}
    assert client.put("/fhir/Organization/org-w", json=org).status_code == 201
    pat = "urn:uuid:8a7e0b6e-0000-4000-8000-00000000a001"
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": pat,
                "resource": {
                    "resourceType": "Patient",
                    "id": "p-w",
                    "managingOrganization": {"reference": "Organization?identifier=http://o|w1"},
                },
                "request": {"method": "PUT", "url": "Patient/p-w"},
            },
            {
                "resource": {
                    "resourceType": "Observation",
                    "id": "o-w",
                    "status": "final",
                    "code": {"text": "x"},
                    "subject": {"reference": pat},
                    "extension": [{"url": "http://x", "valueReference": {"reference": "Location/l-w"}}],
                    "component": [{"code": {"text": "c"}, "extension": [{"url": "http://y", "valueReference": {"reference": pat}}]}],
                },
                "request": {"method": "PUT", "url": "Observation/o-w"},
            },
        ],
    }
    assert post_bundle(client, bundle).status_code == 200
    table = INDEX_TABLES["reference"]
    for res_type, res_id in (("Patient", "p-w"), ("Observation", "o-w")):
        stored = client.get(f"/fhir/{res_type}/{res_id}").json()
        expected = sorted((r["param"], r["target_type"], r["target_id"]) for r in extract_index(stored).reference)
        with client.app.state.fhir.db.read() as conn:
            pk = conn.execute(sa.select(resources.c.pk).where(resources.c.res_type == res_type, resources.c.res_id == res_id)).scalar_one()
            rows = conn.execute(sa.select(table.c.param, table.c.target_type, table.c.target_id).where(table.c.resource_pk == pk)).all()
        assert sorted(tuple(r) for r in rows) == expected
        assert any(r[0] == "-other" for r in rows) or res_type == "Patient"
