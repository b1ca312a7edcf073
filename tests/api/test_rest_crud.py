"""REST interactions per http://hl7.org/fhir/R4/http.html, on SQLite and PostgreSQL."""

from __future__ import annotations

import orjson

FHIR_JSON = "application/fhir+json"

PATIENT = {
    "resourceType": "Patient",
    "identifier": [{"use": "official", "system": "https://fhir.kemkes.go.id/id/nik", "value": "3204154506900003"}],
    "name": [{"use": "official", "text": "Siti Aminah", "family": "Aminah", "given": ["Siti"]}],
    "gender": "female",
    "birthDate": "1990-06-05",
}


def post(client, body, res_type="Patient", **kw):
    return client.post(f"/fhir/{res_type}", content=orjson.dumps(body), headers={"Content-Type": FHIR_JSON, **kw.pop("headers", {})}, **kw)


def put(client, res_type, res_id, body, headers=None):
    return client.put(f"/fhir/{res_type}/{res_id}", content=orjson.dumps(body), headers={"Content-Type": FHIR_JSON, **(headers or {})})


def test_create_assigns_id_and_version_and_sets_headers(client):
    r = post(client, {**PATIENT, "id": "client-chosen"})
    assert r.status_code == 201
    body = r.json()
    assert body["id"] != "client-chosen"
    assert body["meta"]["versionId"] == "1"
    assert r.headers["etag"] == 'W/"1"'
    assert r.headers["location"] == f"http://testserver/fhir/Patient/{body['id']}/_history/1"
    assert r.headers["last-modified"].endswith("GMT")
    assert r.headers["content-type"] == "application/fhir+json; charset=utf-8"


def test_read_returns_exactly_what_was_stored_apart_from_id_and_meta(client):
    raw = (
        b'{"resourceType":"Observation","status":"final","code":{"text":"Suhu"},'
        b'"effectiveDateTime":"2024-01-02T03:04:05+00:00","valueQuantity":{"value":36.50,"unit":"Cel"},'
        b'"issued":"2024-01-02T03:04:05.000+07:00"}'
    )
    created = client.post("/fhir/Observation", content=raw, headers={"Content-Type": FHIR_JSON})
    assert created.status_code == 201, created.text
    res_id = created.json()["id"]
    r = client.get(f"/fhir/Observation/{res_id}")
    assert r.status_code == 200
    text = r.content
    assert b'"effectiveDateTime":"2024-01-02T03:04:05+00:00"' in text
    assert b'"value":36.50' in text
    assert b'"issued":"2024-01-02T03:04:05.000+07:00"' in text
    assert text.index(b'"status"') < text.index(b'"code"') < text.index(b'"effectiveDateTime"')


def test_read_unknown_id_is_404_operation_outcome(client):
    r = client.get("/fhir/Patient/does-not-exist")
    assert r.status_code == 404
    assert r.json()["resourceType"] == "OperationOutcome"
    assert r.json()["issue"][0]["code"] == "not-found"


def test_unknown_and_r4b_only_types_are_404(client):
    for res_type in ("Foo", "SubscriptionTopic", "Citation"):
        r = post(client, {"resourceType": res_type}, res_type)
        assert r.status_code == 404, res_type
        assert r.json()["resourceType"] == "OperationOutcome"


def test_vread_returns_each_version(client):
    pid = post(client, PATIENT).json()["id"]
    put(client, "Patient", pid, {**PATIENT, "id": pid, "gender": "male"})
    v1 = client.get(f"/fhir/Patient/{pid}/_history/1")
    v2 = client.get(f"/fhir/Patient/{pid}/_history/2")
    assert (v1.status_code, v2.status_code) == (200, 200)
    assert v1.json()["gender"] == "female" and v2.json()["gender"] == "male"
    assert v2.headers["etag"] == 'W/"2"'
    assert client.get(f"/fhir/Patient/{pid}/_history/3").status_code == 404
    assert client.get(f"/fhir/Patient/{pid}/_history/x").status_code == 404


def test_update_increments_version(client):
    pid = post(client, PATIENT).json()["id"]
    r = put(client, "Patient", pid, {**PATIENT, "id": pid, "active": True})
    assert r.status_code == 200
    assert r.json()["meta"]["versionId"] == "2"
    assert r.headers["location"].endswith(f"/Patient/{pid}/_history/2")


def test_update_without_changes_keeps_the_version(client):
    pid = post(client, PATIENT).json()["id"]
    r = put(client, "Patient", pid, {**PATIENT, "id": pid})
    assert r.status_code == 200
    assert r.json()["meta"]["versionId"] == "1"


def test_update_as_create_with_client_id(client):
    r = put(client, "Patient", "nik-3204154506900003", {**PATIENT, "id": "nik-3204154506900003"})
    assert r.status_code == 201
    assert r.json()["id"] == "nik-3204154506900003"
    assert client.get("/fhir/Patient/nik-3204154506900003").status_code == 200


def test_update_id_must_match_url(client):
    assert put(client, "Patient", "abc", {**PATIENT, "id": "xyz"}).status_code == 400
    assert put(client, "Patient", "abc", PATIENT).status_code == 400


def test_update_with_stale_if_match_is_412(client):
    pid = post(client, PATIENT).json()["id"]
    put(client, "Patient", pid, {**PATIENT, "id": pid, "active": True})
    stale = put(client, "Patient", pid, {**PATIENT, "id": pid, "active": False}, {"If-Match": 'W/"1"'})
    assert stale.status_code == 412
    assert stale.json()["resourceType"] == "OperationOutcome"
    fresh = put(client, "Patient", pid, {**PATIENT, "id": pid, "active": False}, {"If-Match": 'W/"2"'})
    assert fresh.status_code == 200
    assert fresh.json()["meta"]["versionId"] == "3"


def test_delete_then_read_is_410_and_put_brings_it_back(client):
    pid = post(client, PATIENT).json()["id"]
    d = client.delete(f"/fhir/Patient/{pid}")
    assert d.status_code == 204
    assert d.headers["etag"] == 'W/"2"'
    gone = client.get(f"/fhir/Patient/{pid}")
    assert gone.status_code == 410
    assert gone.json()["issue"][0]["code"] == "deleted"
    assert client.get(f"/fhir/Patient/{pid}/_history/1").status_code == 200
    assert client.get(f"/fhir/Patient/{pid}/_history/2").status_code == 410
    back = put(client, "Patient", pid, {**PATIENT, "id": pid})
    assert back.status_code == 201
    assert back.json()["meta"]["versionId"] == "3"
    assert client.get(f"/fhir/Patient/{pid}").status_code == 200


def test_delete_of_missing_resource_succeeds_without_a_version(client):
    assert client.delete("/fhir/Patient/never-was").status_code == 204
    assert client.get("/fhir/Patient/never-was/_history").status_code == 404


def test_delete_with_stale_if_match_is_412(client):
    pid = post(client, PATIENT).json()["id"]
    assert client.delete(f"/fhir/Patient/{pid}", headers={"If-Match": 'W/"7"'}).status_code == 412
    assert client.get(f"/fhir/Patient/{pid}").status_code == 200


def test_conditional_read_if_none_match_and_if_modified_since(client):
    created = post(client, PATIENT)
    pid = created.json()["id"]
    r = client.get(f"/fhir/Patient/{pid}", headers={"If-None-Match": 'W/"1"'})
    assert r.status_code == 304 and r.content == b""
    assert client.get(f"/fhir/Patient/{pid}", headers={"If-None-Match": 'W/"9"'}).status_code == 200
    lm = created.headers["last-modified"]
    assert client.get(f"/fhir/Patient/{pid}", headers={"If-Modified-Since": lm}).status_code == 304
    assert client.get(f"/fhir/Patient/{pid}", headers={"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"}).status_code == 200


def test_prefer_return_minimal_and_operation_outcome(client):
    minimal = post(client, PATIENT, headers={"Prefer": "return=minimal"})
    assert minimal.status_code == 201 and minimal.content == b""
    assert minimal.headers["location"]
    oo = post(client, PATIENT, headers={"Prefer": "return=OperationOutcome"})
    assert oo.status_code == 201
    assert oo.json()["resourceType"] == "OperationOutcome"


def test_pretty_output(client):
    pid = post(client, PATIENT).json()["id"]
    r = client.get(f"/fhir/Patient/{pid}?_pretty=true")
    assert r.status_code == 200
    assert b'\n  "resourceType": "Patient"' in r.content


def test_method_not_allowed_is_operation_outcome(client):
    r = client.post("/fhir/Patient/abc", content=b"{}", headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 405
    assert r.json()["resourceType"] == "OperationOutcome"


def test_unknown_path_is_operation_outcome(client):
    r = client.get("/fhir/Patient/abc/def/ghi/jkl")
    assert r.status_code == 404
    assert r.json()["resourceType"] == "OperationOutcome"
    assert "detail" not in r.json()
