"""Bad input answers with an OperationOutcome and the right 4xx, never a 500, and stores nothing."""

from __future__ import annotations

import orjson
import pytest

from tests.bundles import entries

FHIR_JSON = "application/fhir+json"


def post_raw(client, raw: bytes, res_type="Patient", content_type=FHIR_JSON):
    return client.post(f"/fhir/{res_type}", content=raw, headers={"Content-Type": content_type})


def assert_outcome(r, status: int) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"] and body["issue"][0]["severity"] in ("error", "fatal")
    return body


def nothing_stored(client) -> bool:
    return entries(client.get("/fhir/_history").json()) == []


@pytest.mark.parametrize(
    "raw",
    [b"{", b'{"resourceType": "Patient",}', b"\xff\xfe{}", b"", b"[]", b'"Patient"', b"null"],
    ids=["truncated", "trailing-comma", "invalid-utf8", "empty", "array", "string", "null"],
)
def test_malformed_body_is_400(client, raw):
    assert_outcome(post_raw(client, raw), 400)
    assert nothing_stored(client)


def test_resource_type_must_match_url(client):
    body = assert_outcome(post_raw(client, b'{"resourceType":"Observation","status":"final","code":{"text":"x"}}'), 400)
    assert "resourceType" in body["issue"][0]["diagnostics"]


def test_missing_resource_type_is_400(client):
    body = assert_outcome(post_raw(client, b'{"gender":"male"}'), 400)
    assert body["issue"][0]["code"] == "required"
    assert body["issue"][0]["diagnostics"] == "The resource has no resourceType; the URL is for Patient"


def test_unknown_element_is_400_with_expression(client):
    body = assert_outcome(post_raw(client, orjson.dumps({"resourceType": "Patient", "name": [{"given": ["A"], "nickname": "B"}]})), 400)
    assert any("Patient.name[0]" in e for i in body["issue"] for e in i.get("expression", []))


def test_string_where_boolean_belongs_is_400(client):
    body = assert_outcome(post_raw(client, b'{"resourceType":"Patient","active":"true"}'), 400)
    assert body["issue"][0]["expression"] == ["Patient.active"]


def test_code_outside_required_binding_is_422(client):
    body = assert_outcome(post_raw(client, b'{"resourceType":"Patient","gender":"boy"}'), 422)
    assert body["issue"][0]["expression"] == ["Patient.gender"]
    assert nothing_stored(client)


def test_impossible_date_is_400(client):
    assert_outcome(post_raw(client, b'{"resourceType":"Patient","birthDate":"2020-02-30"}'), 400)


def test_narrative_with_script_is_rejected(client):
    raw = orjson.dumps(
        {
            "resourceType": "Patient",
            "text": {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml"><script>alert(1)</script></div>'},
        }
    )
    r = post_raw(client, raw)
    assert r.status_code in (400, 422)
    assert r.json()["resourceType"] == "OperationOutcome"


def test_bad_id_in_url_is_400(client):
    r = client.put(
        "/fhir/Patient/" + "a" * 65, content=b'{"resourceType":"Patient","id":"' + b"a" * 65 + b'"}', headers={"Content-Type": FHIR_JSON}
    )
    assert_outcome(r, 400)


def test_unsupported_content_type_is_415(client):
    assert_outcome(post_raw(client, b'{"resourceType":"Patient"}', content_type="text/plain"), 415)


def test_unacceptable_accept_is_406(client):
    r = client.get("/fhir/metadata", headers={"Accept": "text/csv"})
    assert_outcome(r, 406)


def test_body_over_the_limit_is_413(tmp_path):
    from fastapi.testclient import TestClient

    from fhir_server.app import create_app
    from fhir_server.config import Settings

    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'small.sqlite3'}", max_body_bytes=1000))
    with TestClient(app) as small:
        raw = orjson.dumps({"resourceType": "Patient", "name": [{"text": "x" * 2000}]})
        assert_outcome(post_raw(small, raw), 413)
        assert entries(small.get("/fhir/Patient/_history").json()) == []


def test_r4_only_extension_value_meta_is_accepted(client):
    raw = orjson.dumps(
        {
            "resourceType": "Patient",
            "extension": [{"url": "http://example.org/fhir/StructureDefinition/source-meta", "valueMeta": {"versionId": "7"}}],
        }
    )
    assert post_raw(client, raw).status_code == 201


def test_r4b_only_extension_value_type_is_rejected(client):
    raw = orjson.dumps(
        {
            "resourceType": "Patient",
            "extension": [{"url": "http://example.org/x", "valueCodeableReference": {"concept": {"text": "x"}}}],
        }
    )
    assert_outcome(post_raw(client, raw), 400)


@pytest.mark.parametrize("meta", ["x", [{"versionId": "1"}], 5, True])
def test_meta_that_is_not_an_object_is_400_on_every_door(client, meta):
    """``meta`` is stamped by the server (versionId, lastUpdated): one that is not a JSON object
    is bad input (400, ``Patient.meta``), not a crash, whether created, updated, sent in a
    transaction or only validated."""
    body = {"resourceType": "Patient", "id": "m1", "meta": meta}
    doors = [
        client.post("/fhir/Patient", json=body, headers={"Content-Type": FHIR_JSON}),
        client.put("/fhir/Patient/m1", json=body, headers={"Content-Type": FHIR_JSON}),
        client.post(
            "/fhir",
            json={
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [{"resource": body, "request": {"method": "PUT", "url": "Patient/m1"}}],
            },
            headers={"Content-Type": FHIR_JSON},
        ),
    ]
    for r in doors:
        issue = assert_outcome(r, 400)["issue"][0]
        assert issue["expression"][-1] in ("Patient.meta", "Bundle.entry[0].resource.meta"), issue
    validated = client.post("/fhir/Patient/$validate", json=body, headers={"Content-Type": FHIR_JSON})
    assert validated.status_code == 200, validated.text
    assert [i["expression"][-1] for i in validated.json()["issue"] if i["severity"] == "error"] == ["Patient.meta"]
    assert nothing_stored(client)


def test_an_update_with_a_meta_that_is_not_an_object_is_400_and_keeps_the_stored_version(client):
    ok = {"resourceType": "Patient", "id": "m2", "active": True}
    assert client.put("/fhir/Patient/m2", json=ok, headers={"Content-Type": FHIR_JSON}).status_code == 201
    r = client.put("/fhir/Patient/m2", json={**ok, "meta": "x"}, headers={"Content-Type": FHIR_JSON})
    assert assert_outcome(r, 400)["issue"][0]["expression"] == ["Patient.meta"]
    assert client.get("/fhir/Patient/m2").json()["meta"]["versionId"] == "1"
