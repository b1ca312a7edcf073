"""The same request in the URL forms clients build: a trailing slash, doubled slashes, HEAD.

Many HTTP clients join a base URL ending in ``/`` with a path (``POST http://host/fhir/`` for a
transaction, ``GET http://host/fhir/Patient/``). A redirect is no answer: clients do not follow
a 307 for a POST, and a redirect costs a round trip for every GET. Every form must be answered
exactly as the canonical path is (status, headers, body), by the hot path where the canonical
request would be, and inside Bundles too. HEAD is GET without a body (RFC 9110 §9.3.2).
"""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from fhir_server.api.hot_path import HotPath

FHIR_JSON = {"Content-Type": "application/fhir+json"}
PATIENT = {"resourceType": "Patient", "gender": "female", "name": [{"family": "Aminah", "given": ["Siti"]}], "birthDate": "1990-06-05"}
#: headers that differ between two answers to the same request
VOLATILE = {"date", "content-length"}


def _create(client, body=PATIENT) -> str:
    r = client.post("/fhir/Patient", content=orjson.dumps(body), headers=FHIR_JSON)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _same_answer(a, b) -> None:
    assert (a.status_code, a.content) == (b.status_code, b.content)
    assert {k: v for k, v in a.headers.items() if k not in VOLATILE} == {k: v for k, v in b.headers.items() if k not in VOLATILE}


def _bundle_entries(r) -> list:
    return [(e["resource"]["resourceType"], e["resource"]["id"]) for e in r.json().get("entry", [])]


class _Counting:
    def __init__(self, inner: ASGIApp) -> None:
        self.inner, self.count = inner, 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.count += 1
        await self.inner(scope, receive, send)


@pytest.fixture
def fell_through(client, monkeypatch) -> Iterator[_Counting]:
    """Counts the requests the hot path let fall through to FastAPI."""
    layer = client.app.outer
    while not isinstance(layer, HotPath):
        layer = layer.app
    counter = _Counting(layer.app)
    monkeypatch.setattr(layer, "app", counter)
    yield counter


# ----------------------------------------------------------------------------- trailing slashes


@pytest.mark.parametrize(
    "path",
    [
        "/fhir/metadata",
        "/fhir/Patient",
        "/fhir/Patient?gender=female",
        "/fhir/Patient/{id}",
        "/fhir/Patient/{id}/_history",
        "/fhir/Patient/{id}/_history/1",
        "/fhir/Patient/_history",
        "/fhir/_history",
        "/fhir/Patient/{id}/$everything",
        "/fhir/Patient/{id}/$meta",
        "/fhir/$meta",
        "/fhir?_type=Patient",
    ],
)
def test_get_with_a_trailing_slash_answers_as_without(client, path):
    pid = _create(client)
    canonical = path.format(id=pid)
    plain, _, query = canonical.partition("?")
    slashed = plain + "/" + ("?" + query if query else "")
    a = client.get(canonical, follow_redirects=False)
    b = client.get(slashed, follow_redirects=False)
    assert a.status_code == 200, a.text
    if a.json().get("resourceType") == "Bundle" or path.endswith("metadata"):
        # per-response id/lastUpdated of Bundles and the CapabilityStatement's date
        assert b.status_code == 200 and "location" not in b.headers
        assert b.json().get("total") == a.json().get("total")
        assert _bundle_entries(b) == _bundle_entries(a)
        assert b.headers["content-type"] == a.headers["content-type"]
    else:
        _same_answer(a, b)


def test_transaction_posted_to_the_base_with_a_slash_is_run(client):
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:0c3f8a8e-1b8e-4f55-9d9a-000000000001",
                "resource": PATIENT,
                "request": {"method": "POST", "url": "Patient"},
            }
        ],
    }
    r = client.post("/fhir/", content=orjson.dumps(bundle), headers=FHIR_JSON, follow_redirects=False)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["type"] == "transaction-response"
    assert body["entry"][0]["response"]["status"].startswith("201")
    assert client.get("/fhir/Patient?family=Aminah").json()["total"] == 1


def test_batch_posted_to_the_base_with_a_slash_is_run(client):
    pid = _create(client)
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [{"request": {"method": "GET", "url": f"Patient/{pid}"}}]}
    r = client.post("/fhir/", content=orjson.dumps(bundle), headers=FHIR_JSON, follow_redirects=False)
    assert r.status_code == 200, r.text
    assert r.json()["entry"][0]["response"]["status"].startswith("200")


def test_writes_with_a_trailing_slash_answer_as_without(client):
    created = client.post("/fhir/Patient/", content=orjson.dumps(PATIENT), headers=FHIR_JSON, follow_redirects=False)
    assert created.status_code == 201, created.text
    pid = created.json()["id"]
    assert created.headers["location"] == f"http://testserver/fhir/Patient/{pid}/_history/1"

    updated = client.put(f"/fhir/Patient/{pid}/", content=orjson.dumps({**PATIENT, "id": pid, "gender": "male"}), headers=FHIR_JSON)
    assert updated.status_code == 200 and updated.json()["meta"]["versionId"] == "2"

    patch = [{"op": "replace", "path": "/gender", "value": "other"}]
    patched = client.patch(f"/fhir/Patient/{pid}/", content=orjson.dumps(patch), headers={"Content-Type": "application/json-patch+json"})
    assert patched.status_code == 200 and patched.json()["gender"] == "other"

    searched = client.post("/fhir/Patient/_search/", content=b"gender=other", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert searched.status_code == 200 and searched.json()["total"] == 1

    validated = client.post("/fhir/Patient/$validate/", content=orjson.dumps(PATIENT), headers=FHIR_JSON, follow_redirects=False)
    assert validated.status_code == 200 and validated.json()["resourceType"] == "OperationOutcome"

    deleted = client.delete(f"/fhir/Patient/{pid}/", follow_redirects=False)
    assert deleted.status_code == 204
    assert client.get(f"/fhir/Patient/{pid}").status_code == 410


def test_conditional_write_with_a_trailing_slash_uses_the_query_as_condition(client):
    _create(client)
    r = client.put(
        "/fhir/Patient/?family=Aminah", content=orjson.dumps({**PATIENT, "gender": "male"}), headers=FHIR_JSON, follow_redirects=False
    )
    assert r.status_code == 200, r.text
    assert r.json()["gender"] == "male" and r.json()["meta"]["versionId"] == "2"


def test_doubled_slashes_answer_as_one(client):
    pid = _create(client)
    _same_answer(client.get(f"/fhir/Patient/{pid}"), client.get(f"/fhir//Patient//{pid}"))
    assert client.get("/fhir//Patient//?gender=female", follow_redirects=False).json()["total"] == 1


def test_the_hot_path_answers_the_slashed_forms_it_answers_without(client, fell_through):
    pid = _create(client)
    created = client.post("/fhir/Patient/", content=orjson.dumps(PATIENT), headers=FHIR_JSON)
    read = client.get(f"/fhir/Patient/{pid}/")
    searched = client.get("/fhir/Patient/?gender=female")
    assert (created.status_code, read.status_code, searched.status_code) == (201, 200, 200)
    assert searched.json()["total"] == 2
    assert fell_through.count == 0


def test_an_error_answer_is_the_same_with_a_slash(client):
    """In open mode the SMART configuration is 404: the same 404 with a slash, not a redirect."""
    _same_answer(client.get("/fhir/.well-known/smart-configuration"), client.get("/fhir/.well-known/smart-configuration/"))
    _same_answer(client.get("/fhir/Patient/nope"), client.get("/fhir/Patient/nope/"))


def test_a_path_outside_the_fhir_base_is_not_rewritten(client):
    assert client.get("/fhirx/Patient/", follow_redirects=False).status_code == 404


def test_bundle_entry_urls_with_a_trailing_slash(client):
    pid = _create(client)
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"request": {"method": "GET", "url": f"Patient/{pid}/"}},
            {"request": {"method": "GET", "url": f"Patient/{pid}/_history/1/"}},
            {"request": {"method": "GET", "url": "Patient/?gender=female"}},
            {"resource": {**PATIENT, "id": pid, "gender": "male"}, "request": {"method": "PUT", "url": f"Patient/{pid}/"}},
        ],
    }
    r = client.post("/fhir", content=orjson.dumps(bundle), headers=FHIR_JSON)
    assert r.status_code == 200, r.text
    assert [e["response"]["status"][:3] for e in r.json()["entry"]] == ["200", "200", "200", "200"]


# ----------------------------------------------------------------------------- HEAD


@pytest.mark.parametrize("path", ["/fhir/Patient/{id}", "/fhir/Patient/{id}/_history/1", "/fhir/Patient?gender=female", "/fhir/metadata"])
def test_head_is_get_without_a_body(client, path):
    url = path.format(id=_create(client))
    got = client.get(url)
    head = client.head(url)
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == got.headers["content-type"]
    for name in ("etag", "last-modified"):
        assert head.headers.get(name) == got.headers.get(name)


def test_head_of_an_unknown_resource_is_404_without_a_body(client):
    r = client.head("/fhir/Patient/nope")
    assert r.status_code == 404 and r.content == b""
