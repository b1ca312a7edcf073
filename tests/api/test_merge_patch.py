"""JSON Merge Patch (RFC 7386) beside JSON Patch and FHIRPath Patch (http.html#patch).

``application/merge-patch+json``, and a plain JSON object sent as ``application/json`` that is
not a Parameters resource (what fhirpy sends for ``resource.patch(...)``): members replace, ``null``
removes, objects merge, arrays are replaced whole. The result is validated like any write (an
invalid result is 422 and nothing is written); conditional patch and If-Match apply.
"""

from __future__ import annotations

import base64

import orjson
import pytest

from fhir_server.errors import FhirError
from fhir_server.service.patch import apply_merge_patch
from tests.api.test_rest_crud import PATIENT, post
from tests.patches import replace_code
from tests.security.test_token_auth_http import token_for

NIK = "https://fhir.kemkes.go.id/id/nik"
COND = f"identifier={NIK}|3204154506900003"
MERGE = {"Content-Type": "application/merge-patch+json"}
JSON = {"Content-Type": "application/json"}


def _patient(client, **extra) -> str:
    r = post(client, {**PATIENT, **extra})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _patch(client, url, body, headers=MERGE, **kw):
    return client.patch(url, content=orjson.dumps(body), headers={**headers, **kw})


# ----------------------------------------------------------------------------- RFC 7386 semantics


def test_merge_patch_replaces_adds_and_removes_members():
    target = {"resourceType": "Patient", "id": "1", "gender": "female", "birthDate": "1990-06-05", "name": [{"family": "A"}]}
    patched = apply_merge_patch(target, {"gender": "male", "active": True, "birthDate": None, "name": [{"family": "B"}]})
    assert patched == {"resourceType": "Patient", "id": "1", "gender": "male", "active": True, "name": [{"family": "B"}]}
    assert target["gender"] == "female"  # the current version is not touched


def test_merge_patch_merges_objects_and_drops_an_object_it_emptied():
    target = {"resourceType": "Patient", "maritalStatus": {"text": "Kawin", "coding": [{"code": "M"}]}}
    assert apply_merge_patch(target, {"maritalStatus": {"text": "Menikah"}})["maritalStatus"] == {
        "text": "Menikah",
        "coding": [{"code": "M"}],
    }
    # FHIR has no empty objects: removing every member removes the element
    assert "maritalStatus" not in apply_merge_patch(target, {"maritalStatus": {"text": None, "coding": None}})


@pytest.mark.parametrize("body", [[], "x", 1, None])
def test_merge_patch_must_be_an_object(body):
    with pytest.raises(FhirError) as err:
        apply_merge_patch({"resourceType": "Patient"}, body)
    assert err.value.status == 400


# ----------------------------------------------------------------------------- over HTTP


def test_merge_patch_over_http(client):
    pid = _patient(client)
    r = _patch(client, f"/fhir/Patient/{pid}", {"gender": "male", "birthDate": None, "active": False})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["gender"], body["active"], "birthDate" in body) == ("male", False, False)
    assert body["meta"]["versionId"] == "2" and r.headers["etag"] == 'W/"2"'
    assert body["name"] == PATIENT["name"]  # untouched members stay
    history = client.get(f"/fhir/Patient/{pid}/_history").json()["entry"]
    assert history[0]["request"]["method"] == "PATCH"


def test_a_plain_json_object_is_a_merge_patch(client):
    """fhirpy: ``PATCH`` with ``Content-Type: application/json`` and the changed members only."""
    pid = _patient(client)
    r = _patch(client, f"/fhir/Patient/{pid}", {"gender": "other"}, {"Content-Type": "application/json; charset=utf-8"})
    assert r.status_code == 200, r.text
    assert r.json()["gender"] == "other"


def test_a_parameters_body_as_application_json_is_still_fhirpath_patch(client):
    pid = _patient(client)
    params = replace_code("Patient.gender", "male")
    r = _patch(client, f"/fhir/Patient/{pid}", params, JSON)
    assert r.status_code == 200, r.text
    assert r.json()["gender"] == "male"


def test_a_json_array_as_application_json_is_json_patch(client):
    pid = _patient(client)
    r = _patch(client, f"/fhir/Patient/{pid}", [{"op": "replace", "path": "/gender", "value": "male"}], JSON)
    assert r.status_code == 200, r.text
    assert r.json()["gender"] == "male"


@pytest.mark.parametrize("change", [{"gender": "boy"}, {"unknownElement": 1}, {"name": [{}]}, {"birthDate": "05-06-1990"}])
def test_an_invalid_result_is_422_and_nothing_is_written(client, change):
    pid = _patient(client)
    r = _patch(client, f"/fhir/Patient/{pid}", change)
    assert r.status_code == 422, r.text
    assert r.json()["resourceType"] == "OperationOutcome"
    current = client.get(f"/fhir/Patient/{pid}").json()
    assert current["meta"]["versionId"] == "1" and current["gender"] == "female"


def test_a_json_patch_with_an_invalid_result_is_422_too(client):
    pid = _patient(client)
    r = _patch(
        client,
        f"/fhir/Patient/{pid}",
        [{"op": "add", "path": "/unknownElement", "value": 1}],
        {"Content-Type": "application/json-patch+json"},
    )
    assert r.status_code == 422, r.text
    assert client.get(f"/fhir/Patient/{pid}").json()["meta"]["versionId"] == "1"


@pytest.mark.parametrize("path", ["Patient.name.(", "Patient.name)", "Patient..name"])
def test_a_fhirpath_patch_path_with_a_syntax_error_is_400_not_another_element(client, path):
    """fhirpathpy recovers from syntax errors (``Patient.name.(`` evaluates as ``Patient.name``):
    the patch must be refused, not applied to the element the recovery happens to select."""
    pid = _patient(client)
    op = [{"name": "type", "valueCode": "replace"}, {"name": "path", "valueString": path}, {"name": "value", "valueString": "x"}]
    r = _patch(client, f"/fhir/Patient/{pid}", {"resourceType": "Parameters", "parameter": [{"name": "operation", "part": op}]}, JSON)
    assert r.status_code == 400, r.text
    assert "not a FHIRPath expression" in r.json()["issue"][0]["diagnostics"]
    assert client.get(f"/fhir/Patient/{pid}").json()["meta"]["versionId"] == "1"


@pytest.mark.parametrize("change", [{"id": "another"}, {"resourceType": "Person"}])
def test_a_merge_patch_may_not_change_id_or_type(client, change):
    pid = _patient(client)
    assert _patch(client, f"/fhir/Patient/{pid}", change).status_code == 400


@pytest.mark.parametrize("body", [b"[1]", b'"x"', b"not json"])
def test_a_merge_patch_body_that_is_not_an_object_is_400(client, body):
    pid = _patient(client)
    r = client.patch(f"/fhir/Patient/{pid}", content=body, headers=MERGE)
    assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"


def test_merge_patch_honours_if_match(client):
    pid = _patient(client)
    assert _patch(client, f"/fhir/Patient/{pid}", {"active": True}, **{"If-Match": 'W/"7"'}).status_code == 412
    assert _patch(client, f"/fhir/Patient/{pid}", {"active": True}, **{"If-Match": 'W/"1"'}).status_code == 200


def test_conditional_merge_patch(client):
    pid = _patient(client)
    r = _patch(client, f"/fhir/Patient?{COND}", {"active": False})
    assert r.status_code == 200, r.text
    assert r.json()["id"] == pid and r.json()["active"] is False


def test_merge_patch_in_a_transaction_as_a_binary(client):
    pid = _patient(client)
    data = base64.b64encode(orjson.dumps({"active": True})).decode()
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {"resourceType": "Binary", "contentType": "application/merge-patch+json", "data": data},
                "request": {"method": "PATCH", "url": f"Patient/{pid}"},
            }
        ],
    }
    r = client.post("/fhir", content=orjson.dumps(bundle), headers={"Content-Type": "application/fhir+json"})
    assert r.status_code == 200, r.text
    assert client.get(f"/fhir/Patient/{pid}").json()["active"] is True


def test_capability_statement_declares_the_patch_formats(client):
    formats = client.get("/fhir/metadata").json()["patchFormat"]
    assert {"application/json-patch+json", "application/fhir+json", "application/merge-patch+json", "application/json"} <= set(formats)


def test_merge_patch_needs_the_update_scope(secured):
    writer = token_for(secured, "system/Patient.cruds")
    reader = token_for(secured, "system/Patient.rs")
    created = secured.post(
        "/fhir/Patient",
        content=orjson.dumps(PATIENT),
        headers={"Authorization": f"Bearer {writer}", "Content-Type": "application/fhir+json"},
    )
    pid = created.json()["id"]
    refused = _patch(secured, f"/fhir/Patient/{pid}", {"active": True}, **{"Authorization": f"Bearer {reader}"})
    assert refused.status_code == 403
    assert secured.get(f"/fhir/Patient/{pid}", headers={"Authorization": f"Bearer {reader}"}).json()["meta"]["versionId"] == "1"
    allowed = _patch(secured, f"/fhir/Patient/{pid}", {"active": True}, **{"Authorization": f"Bearer {writer}"})
    assert allowed.status_code == 200
