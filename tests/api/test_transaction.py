"""Transactions and batches (http.html#transaction): ordering, urn:uuid resolution, atomicity."""

from __future__ import annotations

import orjson

from tests.bundles import entries

NIK = "https://fhir.kemkes.go.id/id/nik"


def visit_bundle(nik: str = "3204154506900003", kind: str = "transaction") -> dict:
    """What a SIMRS sends for one visit: Patient, Encounter, Condition and Coverage linked by urn:uuid."""
    pat, enc = "urn:uuid:8a7e0b6e-0000-4000-8000-000000000001", "urn:uuid:8a7e0b6e-0000-4000-8000-000000000002"
    return {
        "resourceType": "Bundle",
        "type": kind,
        "entry": [
            {
                "fullUrl": pat,
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [{"system": NIK, "value": nik}],
                    "name": [{"text": "Siti Aminah"}],
                    "gender": "female",
                },
                "request": {"method": "POST", "url": "Patient", "ifNoneExist": f"identifier={NIK}|{nik}"},
            },
            {
                "fullUrl": enc,
                "resource": {
                    "resourceType": "Encounter",
                    "status": "finished",
                    "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                    "subject": {"reference": pat},
                    "extension": [{"url": "http://example.org/fhir/StructureDefinition/referrer", "valueReference": {"reference": pat}}],
                },
                "request": {"method": "POST", "url": "Encounter"},
            },
            {
                "resource": {
                    "resourceType": "Condition",
                    "subject": {"reference": pat},
                    "encounter": {"reference": enc},
                    "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "J06.9"}]},
                },
                "request": {"method": "POST", "url": "Condition"},
            },
            {
                "resource": {
                    "resourceType": "Coverage",
                    "status": "active",
                    "beneficiary": {"reference": pat},
                    "payor": [{"display": "BPJS Kesehatan"}],
                    "subscriberId": "0001234567890",
                },
                "request": {"method": "POST", "url": "Coverage"},
            },
        ],
    }


def post_bundle(client, bundle, **headers):
    return client.post("/fhir", content=orjson.dumps(bundle), headers={"Content-Type": "application/fhir+json", **headers})


def count(client, res_type):
    return len(client.get(f"/fhir/{res_type}?_count=100").json().get("entry", []))


def test_transaction_creates_everything_and_resolves_urn_uuid_references(client):
    r = post_bundle(client, visit_bundle())
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["type"] == "transaction-response"
    statuses = [e["response"]["status"] for e in out["entry"]]
    assert statuses == ["201 Created"] * 4
    assert all(e["response"]["etag"] == 'W/"1"' and e["response"]["lastModified"] for e in out["entry"])
    patient_id = out["entry"][0]["response"]["location"].split("/")[1]
    encounter = out["entry"][1]["resource"]
    assert encounter["subject"]["reference"] == f"Patient/{patient_id}"
    assert encounter["extension"][0]["valueReference"]["reference"] == f"Patient/{patient_id}"
    condition = client.get("/fhir/" + out["entry"][2]["response"]["location"].rsplit("/_history", 1)[0]).json()
    assert condition["encounter"]["reference"] == f"Encounter/{encounter['id']}"
    assert client.get(f"/fhir/Encounter?patient={patient_id}").json()["entry"][0]["resource"]["id"] == encounter["id"]


def test_resending_the_visit_does_not_duplicate_the_patient(client):
    post_bundle(client, visit_bundle())
    second = post_bundle(client, visit_bundle())
    assert second.status_code == 200
    assert second.json()["entry"][0]["response"]["status"] == "200 OK"
    assert count(client, "Patient") == 1
    assert count(client, "Encounter") == 2


def test_a_failing_entry_rolls_back_the_whole_transaction(client):
    bundle = visit_bundle()
    bundle["entry"][2]["resource"]["clinicalStatus"] = {
        "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "bogus"}]
    }
    r = post_bundle(client, bundle)
    assert r.status_code == 422
    issue = r.json()["issue"][0]
    assert "Bundle.entry[2]" in issue["diagnostics"]
    assert issue["expression"][0].startswith("Bundle.entry[2]")
    for res_type in ("Patient", "Encounter", "Condition", "Coverage"):
        assert count(client, res_type) == 0, res_type
    assert entries(client.get("/fhir/_history").json()) == []


def test_processing_order_delete_post_put_get(client):
    keep = client.put("/fhir/Patient/p1", json={"resourceType": "Patient", "id": "p1", "gender": "male"}).json()
    assert keep["id"] == "p1"
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"request": {"method": "GET", "url": "Patient/p1"}},
            {"resource": {"resourceType": "Patient", "id": "p1", "gender": "female"}, "request": {"method": "PUT", "url": "Patient/p1"}},
            {"request": {"method": "DELETE", "url": "Patient/p2"}},
        ],
    }
    out = post_bundle(client, bundle).json()
    assert [e["response"]["status"] for e in out["entry"]] == ["200 OK", "200 OK", "204 No Content"]
    assert out["entry"][0]["resource"]["gender"] == "female"  # GET ran after the PUT


def test_batch_entries_succeed_or_fail_independently(client):
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"resource": {"resourceType": "Patient", "gender": "male"}, "request": {"method": "POST", "url": "Patient"}},
            {"resource": {"resourceType": "Patient", "gender": "boy"}, "request": {"method": "POST", "url": "Patient"}},
            {"request": {"method": "GET", "url": "Patient/missing"}},
        ],
    }
    r = post_bundle(client, bundle)
    assert r.status_code == 200
    out = r.json()
    assert out["type"] == "batch-response"
    assert [e["response"]["status"].split()[0] for e in out["entry"]] == ["201", "422", "404"]
    assert out["entry"][1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert count(client, "Patient") == 1


def test_unresolvable_urn_uuid_reference_is_400(client):
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {
                    "resourceType": "Encounter",
                    "status": "finished",
                    "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                    "subject": {"reference": "urn:uuid:00000000-0000-4000-8000-00000000dead"},
                },
                "request": {"method": "POST", "url": "Encounter"},
            }
        ],
    }
    assert post_bundle(client, bundle).status_code == 400
    assert count(client, "Encounter") == 0


def test_conditional_reference_is_resolved(client):
    post_bundle(client, visit_bundle())
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {
                    "resourceType": "Encounter",
                    "status": "planned",
                    "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                    "subject": {"reference": f"Patient?identifier={NIK}|3204154506900003"},
                },
                "request": {"method": "POST", "url": "Encounter"},
            }
        ],
    }
    out = post_bundle(client, bundle).json()
    pid = client.get(f"/fhir/Patient?identifier={NIK}|3204154506900003").json()["entry"][0]["resource"]["id"]
    assert out["entry"][0]["resource"]["subject"]["reference"] == f"Patient/{pid}"


def test_entry_limit_is_413(tmp_path):
    from fastapi.testclient import TestClient

    from fhir_server.app import create_app
    from fhir_server.config import Settings

    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'limit.sqlite3'}", max_bundle_entries=2))
    with TestClient(app) as small:
        assert post_bundle(small, visit_bundle()).status_code == 413


def test_wrong_bundle_type_is_400(client):
    r = post_bundle(client, {"resourceType": "Bundle", "type": "collection", "entry": []})
    assert r.status_code == 400
    assert r.json()["resourceType"] == "OperationOutcome"


def test_prefer_minimal_leaves_resources_out(client):
    out = post_bundle(client, visit_bundle(), Prefer="return=minimal").json()
    assert all("resource" not in e for e in out["entry"])
    assert all(e["response"]["location"] for e in out["entry"])


def test_the_first_failing_entry_is_reported_though_each_check_runs_over_all_entries(client, monkeypatch):
    """Validation runs one check at a time over every entry (the structure checker on all, then
    the R4B model on those it passed): a later entry's structure error is found before an earlier
    entry's model error, yet the error answered is still the earlier entry's, as when each entry
    was validated in turn."""
    from fhir_server.errors import error
    from fhir_server.model import validate

    real = validate.model_issues

    def model_issues(resource, *, memo=False):  # a verdict only the R4B model would give
        if resource.get("resourceType") == "Encounter":
            return [error("value", "the model says no", "Encounter.status")]
        return real(resource, memo=memo)

    monkeypatch.setattr(validate, "model_issues", model_issues)
    bundle = visit_bundle()
    bundle["entry"][2]["resource"]["onsetDateTime"] = "not a date"  # the Condition: a structure error
    r = post_bundle(client, bundle)
    assert r.status_code == 400
    issue = r.json()["issue"][0]
    assert issue["diagnostics"].startswith("Bundle.entry[1]"), issue
    assert "the model says no" in issue["diagnostics"]
    for res_type in ("Patient", "Encounter", "Condition", "Coverage"):
        assert count(client, res_type) == 0, res_type


def test_a_full_url_that_is_not_a_string_is_400(client):
    for full_url in (["urn:uuid:8a7e0b6e-0000-4000-8000-000000000001"], {"a": 1}, 5):
        for kind in ("transaction", "batch"):
            bundle = {
                "resourceType": "Bundle",
                "type": kind,
                "entry": [{"fullUrl": full_url, "resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}}],
            }
            r = post_bundle(client, bundle)
            if kind == "batch":  # the entry fails, the batch answers
                assert r.status_code == 200, r.text
                r_entry = r.json()["entry"][0]["response"]
                assert r_entry["status"].startswith("400"), r_entry
                issue = r_entry["outcome"]["issue"][0]
            else:
                assert r.status_code == 400, r.text
                issue = r.json()["issue"][0]
            assert issue["expression"] == ["Bundle.entry[0].fullUrl"], issue
    assert count(client, "Patient") == 0
