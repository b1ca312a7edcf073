"""Conditional create, update, delete and patch (http.html#ccreate, #cond-update, #cdelete, #patch)."""

from __future__ import annotations

import orjson

from tests.api.test_rest_crud import PATIENT, post
from tests.patches import fhirpath_patch

NIK = "https://fhir.kemkes.go.id/id/nik"
COND = f"identifier={NIK}|3204154506900003"
FHIR_JSON = {"Content-Type": "application/fhir+json"}
JSON_PATCH = {"Content-Type": "application/json-patch+json"}


def test_conditional_create_creates_once_then_returns_the_match(client):
    first = post(client, PATIENT, headers={"If-None-Exist": COND})
    assert first.status_code == 201
    second = post(client, PATIENT, headers={"If-None-Exist": COND})
    assert second.status_code == 200
    assert second.json()["id"] == first.json()["id"]
    assert len(client.get("/fhir/Patient").json()["entry"]) == 1


def test_conditional_create_with_several_matches_is_412(client):
    post(client, PATIENT)
    post(client, PATIENT)
    r = post(client, PATIENT, headers={"If-None-Exist": COND})
    assert r.status_code == 412
    assert r.json()["resourceType"] == "OperationOutcome"


def test_conditional_create_with_unknown_parameter_is_400(client):
    r = post(client, PATIENT, headers={"If-None-Exist": "nonsense=1"})
    assert r.status_code == 400


def test_conditional_update_creates_updates_and_refuses_ambiguity(client):
    url = f"/fhir/Patient?{COND}"
    created = client.put(url, content=orjson.dumps(PATIENT), headers=FHIR_JSON)
    assert created.status_code == 201
    pid = created.json()["id"]
    updated = client.put(url, content=orjson.dumps({**PATIENT, "active": True}), headers=FHIR_JSON)
    assert updated.status_code == 200
    assert updated.json()["id"] == pid and updated.json()["meta"]["versionId"] == "2"
    post(client, PATIENT)
    ambiguous = client.put(url, content=orjson.dumps(PATIENT), headers=FHIR_JSON)
    assert ambiguous.status_code == 412


def test_conditional_update_with_other_id_in_body_is_400(client):
    post(client, PATIENT)
    r = client.put(f"/fhir/Patient?{COND}", content=orjson.dumps({**PATIENT, "id": "other"}), headers=FHIR_JSON)
    assert r.status_code == 400


def test_conditional_delete_single(client):
    pid = post(client, PATIENT).json()["id"]
    assert client.delete(f"/fhir/Patient?{COND}").status_code == 204
    assert client.get(f"/fhir/Patient/{pid}").status_code == 410
    assert client.delete(f"/fhir/Patient?{COND}").status_code == 204  # nothing left to delete
    post(client, PATIENT)
    post(client, PATIENT)
    assert client.delete(f"/fhir/Patient?{COND}").status_code == 412


def test_conditional_delete_without_condition_is_400(client):
    assert client.delete("/fhir/Patient").status_code == 400


def test_json_patch(client):
    pid = post(client, PATIENT).json()["id"]
    ops = [{"op": "replace", "path": "/gender", "value": "male"}, {"op": "add", "path": "/active", "value": True}]
    r = client.patch(f"/fhir/Patient/{pid}", content=orjson.dumps(ops), headers=JSON_PATCH)
    assert r.status_code == 200, r.text
    assert r.json()["gender"] == "male" and r.json()["active"] is True
    assert r.json()["meta"]["versionId"] == "2"
    history = client.get(f"/fhir/Patient/{pid}/_history").json()["entry"]
    assert history[0]["request"]["method"] == "PATCH"


def test_json_patch_result_is_validated(client):
    pid = post(client, PATIENT).json()["id"]
    ops = [{"op": "replace", "path": "/gender", "value": "boy"}]
    r = client.patch(f"/fhir/Patient/{pid}", content=orjson.dumps(ops), headers=JSON_PATCH)
    assert r.status_code == 422
    assert client.get(f"/fhir/Patient/{pid}").json()["gender"] == "female"


def test_json_patch_failed_test_op_and_bad_path(client):
    pid = post(client, PATIENT).json()["id"]
    test_op = [{"op": "test", "path": "/gender", "value": "male"}]
    assert client.patch(f"/fhir/Patient/{pid}", content=orjson.dumps(test_op), headers=JSON_PATCH).status_code == 422
    bad = [{"op": "remove", "path": "/nothing/here"}]
    assert client.patch(f"/fhir/Patient/{pid}", content=orjson.dumps(bad), headers=JSON_PATCH).status_code == 400


def test_patch_honours_if_match(client):
    pid = post(client, PATIENT).json()["id"]
    ops = [{"op": "replace", "path": "/gender", "value": "male"}]
    r = client.patch(f"/fhir/Patient/{pid}", content=orjson.dumps(ops), headers={**JSON_PATCH, "If-Match": 'W/"5"'})
    assert r.status_code == 412


def test_fhirpath_patch_operations(client):
    identifiers = [{"system": NIK, "value": "3204154506900003"}, {"system": "http://rs.example/mrn", "value": "RM-1"}]
    pid = post(client, {**PATIENT, "identifier": identifiers}).json()["id"]
    body = fhirpath_patch(
        [
            {"name": "type", "valueCode": "replace"},
            {"name": "path", "valueString": "Patient.birthDate"},
            {"name": "value", "valueDate": "1991-07-08"},
        ],
        [
            {"name": "type", "valueCode": "delete"},
            {"name": "path", "valueString": "Patient.identifier.where(system='http://rs.example/mrn')"},
        ],
        [
            {"name": "type", "valueCode": "add"},
            {"name": "path", "valueString": "Patient"},
            {"name": "name", "valueString": "telecom"},
            {"name": "value", "part": [{"name": "system", "valueCode": "phone"}, {"name": "value", "valueString": "081234567890"}]},
        ],
        [
            {"name": "type", "valueCode": "insert"},
            {"name": "path", "valueString": "Patient.name[0].given"},
            {"name": "index", "valueInteger": 0},
            {"name": "value", "valueString": "Nur"},
        ],
    )
    r = client.patch(f"/fhir/Patient/{pid}", content=orjson.dumps(body), headers=FHIR_JSON)
    assert r.status_code == 200, r.text
    p = r.json()
    assert p["birthDate"] == "1991-07-08"
    assert [i["system"] for i in p["identifier"]] == [NIK]
    assert p["telecom"] == [{"system": "phone", "value": "081234567890"}]
    assert p["name"][0]["given"] == ["Nur", "Siti"]


def test_fhirpath_patch_with_bad_path_is_400(client):
    pid = post(client, PATIENT).json()["id"]
    body = fhirpath_patch(
        [{"name": "type", "valueCode": "replace"}, {"name": "path", "valueString": "Patient.name.("}, {"name": "value", "valueString": "x"}]
    )
    assert client.patch(f"/fhir/Patient/{pid}", content=orjson.dumps(body), headers=FHIR_JSON).status_code == 400


def test_conditional_patch(client):
    pid = post(client, PATIENT).json()["id"]
    ops = [{"op": "add", "path": "/active", "value": False}]
    r = client.patch(f"/fhir/Patient?{COND}", content=orjson.dumps(ops), headers=JSON_PATCH)
    assert r.status_code == 200
    assert r.json()["id"] == pid and r.json()["active"] is False


def test_conditional_patch_without_a_match_is_404_and_writes_nothing(client):
    """http.html#patch: "No matches: The server returns a 404 Not Found" (HAPI too); it was 412."""
    ops = [{"op": "add", "path": "/active", "value": False}]
    r = client.patch(f"/fhir/Patient?{COND}", content=orjson.dumps(ops), headers=JSON_PATCH)
    assert r.status_code == 404
    assert r.json()["resourceType"] == "OperationOutcome" and r.json()["issue"][0]["code"] == "not-found"
    assert client.get("/fhir/Patient?_summary=count").json()["total"] == 0


def test_conditional_patch_with_several_matches_is_412_and_changes_nothing(client):
    """http.html#patch: "Multiple matches: The server returns a 412 Precondition Failed"."""
    ids = [post(client, PATIENT).json()["id"] for _ in range(2)]
    ops = [{"op": "add", "path": "/active", "value": False}]
    r = client.patch(f"/fhir/Patient?{COND}", content=orjson.dumps(ops), headers=JSON_PATCH)
    assert r.status_code == 412 and r.json()["resourceType"] == "OperationOutcome"
    assert all("active" not in client.get(f"/fhir/Patient/{i}").json() for i in ids)


def test_conditional_patch_entries_answer_as_the_route(client):
    """The same statuses for a batch entry (its own) and a transaction (the whole Bundle)."""
    patch = {"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
        {"name": "type", "valueCode": "add"}, {"name": "path", "valueString": "Patient"},
        {"name": "name", "valueString": "active"}, {"name": "value", "valueBoolean": False}]}]}  # fmt: skip
    entry = {"resource": patch, "request": {"method": "PATCH", "url": f"Patient?{COND}"}}
    for kind, expected in (("batch", "404"), ("transaction", "404")):
        r = client.post("/fhir", content=orjson.dumps({"resourceType": "Bundle", "type": kind, "entry": [entry]}), headers=FHIR_JSON)
        status = r.json()["entry"][0]["response"]["status"][:3] if kind == "batch" else str(r.status_code)
        assert status == expected, r.text
    post(client, PATIENT)
    post(client, PATIENT)
    r = client.post("/fhir", content=orjson.dumps({"resourceType": "Bundle", "type": "batch", "entry": [entry]}), headers=FHIR_JSON)
    assert r.json()["entry"][0]["response"]["status"][:3] == "412"


def test_a_conditional_reference_without_a_match_still_fails_the_transaction_with_412(client):
    """Conditional references are not conditional patch: no match fails the transaction (412)."""
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": f"Patient?{COND}"}}
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": obs, "request": {"method": "POST", "url": "Observation"}}],
    }
    assert client.post("/fhir", content=orjson.dumps(bundle), headers=FHIR_JSON).status_code == 412
