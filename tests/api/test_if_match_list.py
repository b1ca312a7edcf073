"""``If-Match`` with a list of ETags, or ``*`` (RFC 9110 §13.1.1; FHIR R4 http.html#concurrency):
the precondition holds when any listed ETag names the current version (``*``: when the resource
exists; empty list elements are ignored, RFC 9110 §5.6.1.2). A list was 400 ("not a version id
or ETag"), and so was ``*``. The same rule on every door that reads If-Match: update, patch,
delete, and a Bundle entry's ``request.ifMatch`` (service/preconditions.py).
"""

from __future__ import annotations

import orjson
import pytest

from tests.security.test_token_auth_http import auth, token_for

H = {"Content-Type": "application/fhir+json"}
PATIENT = {"resourceType": "Patient", "id": "p1", "gender": "female"}


def _seed(client, versions: int = 2) -> None:
    for n in range(versions):
        body = {**PATIENT, "birthDate": f"199{n}-01-01"}
        assert client.put("/fhir/Patient/p1", content=orjson.dumps(body), headers=H).status_code in (200, 201)


def _put(client, if_match: str, birth: str = "2000-01-01", res_id: str = "p1"):
    body = {**PATIENT, "id": res_id, "birthDate": birth}
    return client.put(f"/fhir/Patient/{res_id}", content=orjson.dumps(body), headers={**H, "If-Match": if_match})


@pytest.mark.parametrize("header", ['W/"1", W/"2"', 'W/"2",W/"7"', '"9", W/"2"', "*", ' W/"2" ', 'W/"1",,W/"2"'])
def test_update_holds_when_any_listed_etag_is_current(client, header):
    _seed(client)
    r = _put(client, header)
    assert r.status_code == 200, r.text
    assert r.headers["etag"] == 'W/"3"'


@pytest.mark.parametrize("header", ['W/"1", W/"3"', 'W/"5",W/"7"'])
def test_update_fails_412_when_no_listed_etag_is_current(client, header):
    _seed(client)
    r = _put(client, header)
    assert r.status_code == 412, r.text
    assert r.json()["resourceType"] == "OperationOutcome"
    assert client.get("/fhir/Patient/p1").headers["etag"] == 'W/"2"'


def test_star_on_a_missing_resource_is_412_and_creates_nothing(client):
    r = _put(client, "*", res_id="nobody")
    assert r.status_code == 412, r.text
    assert client.get("/fhir/Patient/nobody").status_code == 404


@pytest.mark.parametrize("header", ['W/"1", nonsense', ",", " , ", '*, W/"1"'])
def test_a_malformed_list_is_400(client, header):
    _seed(client)
    r = _put(client, header)
    assert r.status_code == 400, r.text
    assert r.json()["issue"][0]["code"] == "invalid"


def test_patch_and_delete_take_a_list(client):
    _seed(client)
    patch = orjson.dumps([{"op": "replace", "path": "/gender", "value": "male"}])
    jp = {"Content-Type": "application/json-patch+json"}
    assert client.patch("/fhir/Patient/p1", content=patch, headers={**jp, "If-Match": 'W/"1", W/"9"'}).status_code == 412
    r = client.patch("/fhir/Patient/p1", content=patch, headers={**jp, "If-Match": 'W/"1", W/"2"'})
    assert r.status_code == 200, r.text
    assert client.delete("/fhir/Patient/p1", headers={"If-Match": 'W/"1", W/"2"'}).status_code == 412
    assert client.delete("/fhir/Patient/p1", headers={"If-Match": '"2", W/"3"'}).status_code == 204
    assert client.get("/fhir/Patient/p1").status_code == 410


@pytest.mark.parametrize("kind", ["batch", "transaction"])
def test_bundle_entries_if_match_take_a_list(client, kind):
    _seed(client)

    def bundle(if_match: str) -> bytes:
        entry = {"resource": {**PATIENT, "active": True}, "request": {"method": "PUT", "url": "Patient/p1", "ifMatch": if_match}}
        return orjson.dumps({"resourceType": "Bundle", "type": kind, "entry": [entry]})

    failed = client.post("/fhir", content=bundle('W/"1", W/"5"'), headers=H)
    if kind == "batch":
        assert failed.json()["entry"][0]["response"]["status"].startswith("412")
    else:
        assert failed.status_code == 412, failed.text
    r = client.post("/fhir", content=bundle('W/"1", W/"2"'), headers=H)
    assert r.status_code == 200, r.text
    assert r.json()["entry"][0]["response"]["etag"] == 'W/"3"'


def test_token_mode_a_list_does_not_open_the_door(secured):
    """The precondition is checked after the scopes: a reader's matching list is 403, nothing written."""
    writer = token_for(secured, "system/*.cruds")
    reader = token_for(secured, "system/Patient.rs")
    assert secured.put("/fhir/Patient/p1", content=orjson.dumps(PATIENT), headers=auth(writer)).status_code == 201
    changed = orjson.dumps({**PATIENT, "gender": "male"})
    for header in ('W/"1", W/"2"', "*"):
        r = secured.put("/fhir/Patient/p1", content=changed, headers={**auth(reader), "If-Match": header})
        assert r.status_code == 403, r.text
        assert secured.delete("/fhir/Patient/p1", headers={**auth(reader), "If-Match": header}).status_code == 403
    assert secured.get("/fhir/Patient/p1", headers=auth(reader)).json()["gender"] == "female"
    r = secured.put("/fhir/Patient/p1", content=changed, headers={**auth(writer), "If-Match": 'W/"0", W/"1"'})
    assert r.status_code == 200, r.text
