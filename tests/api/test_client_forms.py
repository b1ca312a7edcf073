"""Request forms real clients send that the spec allows (or that mean one thing only), answered
as their plain form: media types with parameters, ``_format`` values, ``Prefer`` spelling, and
conditional create written as ``POST [type]?search`` (fhirpy's ``get_or_create``)."""

from __future__ import annotations

import orjson
import pytest

NIK = "https://fhir.kemkes.go.id/id/nik"
PATIENT = {"resourceType": "Patient", "identifier": [{"system": NIK, "value": "3204154506900003"}], "gender": "female"}


def _create(client, body=PATIENT, **headers):
    return client.post("/fhir/Patient", content=orjson.dumps(body), headers={"Content-Type": "application/fhir+json", **headers})


# ----------------------------------------------------------------------------- conditional create by query


def test_post_with_search_parameters_is_a_conditional_create(client):
    """``POST [type]?identifier=...``: fhirpy's get_or_create. Ignoring the query created a
    duplicate on every call; it is the condition, as If-None-Exist would be."""
    url = f"/fhir/Patient?identifier={NIK}|3204154506900003"
    first = client.post(url, content=orjson.dumps(PATIENT), headers={"Content-Type": "application/json"})
    second = client.post(url, content=orjson.dumps(PATIENT), headers={"Content-Type": "application/json"})
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    assert client.get(f"/fhir/Patient?identifier={NIK}|3204154506900003").json()["total"] == 1


def test_post_with_the_same_condition_in_query_and_header_is_one_condition(client):
    url = f"/fhir/Patient?identifier={NIK}|3204154506900003"
    header = {"Content-Type": "application/fhir+json", "If-None-Exist": f"Patient?identifier={NIK}|3204154506900003"}
    statuses = [client.post(url, content=orjson.dumps(PATIENT), headers=header).status_code for _ in range(2)]
    assert statuses == [201, 200]


def test_post_with_only_format_parameters_is_a_plain_create(client):
    assert _create(client).status_code == 201
    r = client.post(
        "/fhir/Patient?_format=json&_pretty=true", content=orjson.dumps(PATIENT), headers={"Content-Type": "application/fhir+json"}
    )
    assert r.status_code == 201
    assert client.get("/fhir/Patient?_summary=count").json()["total"] == 2


def test_post_with_a_query_and_a_different_if_none_exist_is_400(client):
    r = client.post(
        f"/fhir/Patient?identifier={NIK}|1",
        content=orjson.dumps(PATIENT),
        headers={"Content-Type": "application/fhir+json", "If-None-Exist": f"identifier={NIK}|2"},
    )
    assert r.status_code == 400
    assert client.get("/fhir/Patient?_summary=count").json()["total"] == 0


def test_post_with_an_unknown_search_parameter_as_condition_is_400(client):
    r = client.post("/fhir/Patient?nonsense=1", content=orjson.dumps(PATIENT), headers={"Content-Type": "application/fhir+json"})
    assert r.status_code == 400
    assert client.get("/fhir/Patient?_summary=count").json()["total"] == 0


@pytest.mark.parametrize("kind", ["transaction", "batch"])
def test_a_bundle_post_entry_with_search_parameters_is_a_conditional_create(client, kind):
    entry = {"resource": PATIENT, "request": {"method": "POST", "url": f"Patient?identifier={NIK}|3204154506900003"}}
    bundle = {"resourceType": "Bundle", "type": kind, "entry": [entry]}
    statuses = []
    for _ in range(2):
        r = client.post("/fhir", content=orjson.dumps(bundle), headers={"Content-Type": "application/fhir+json"})
        assert r.status_code == 200, r.text
        statuses.append(r.json()["entry"][0]["response"]["status"][:3])
    assert statuses == ["201", "200"]
    assert client.get("/fhir/Patient?_summary=count").json()["total"] == 1


@pytest.mark.parametrize("kind", ["transaction", "batch"])
def test_a_bundle_conditional_update_by_an_identifier_with_a_url_system(client, kind):
    """``PUT Patient?identifier=https://fhir.kemkes.go.id/id/nik|...``: the SATUSEHAT form. The
    ``https://`` in the query was taken for a URL pointing at another server (400)."""
    entry = {"resource": PATIENT, "request": {"method": "PUT", "url": f"Patient?identifier={NIK}|3204154506900003"}}
    bundle = {"resourceType": "Bundle", "type": kind, "entry": [entry]}
    r = client.post("/fhir", content=orjson.dumps(bundle), headers={"Content-Type": "application/fhir+json"})
    assert r.status_code == 200, r.text
    assert r.json()["entry"][0]["response"]["status"][:3] == "201"
    assert client.get(f"/fhir/Patient?identifier={NIK}|3204154506900003").json()["total"] == 1


def test_a_bundle_entry_url_of_another_server_is_still_refused(client):
    entry = {"resource": PATIENT, "request": {"method": "PUT", "url": "https://elsewhere.example/fhir/Patient/1"}}
    r = client.post("/fhir", content=orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": [entry]}))
    assert r.status_code == 400 and "another server" in r.text


def test_a_bundle_entry_with_an_if_none_exist_that_is_not_a_string_is_400(client):
    entry = {"resource": PATIENT, "request": {"method": "POST", "url": "Patient", "ifNoneExist": {"identifier": "x"}}}
    r = client.post("/fhir", content=orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": [entry]}))
    assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"


# ----------------------------------------------------------------------------- media types


@pytest.mark.parametrize(
    "content_type",
    [
        "application/fhir+json",
        "application/fhir+json; charset=utf-8",
        "application/fhir+json;fhirVersion=4.0",
        "application/fhir+json; fhirVersion=4.0; charset=UTF-8",
        "application/json",
        "application/json; charset=utf-8",
        "application/json+fhir",
        "Application/FHIR+JSON",
    ],
)
def test_json_content_types_a_client_may_send(client, content_type):
    r = client.post("/fhir/Patient", content=orjson.dumps(PATIENT), headers={"Content-Type": content_type})
    assert r.status_code == 201, r.text


@pytest.mark.parametrize(
    ("value", "content_type"),
    [
        ("json", "application/fhir+json"),
        ("application/fhir+json", "application/fhir+json"),
        ("application/fhir+json;fhirVersion=4.0", "application/fhir+json"),
        ("application/fhir+json; charset=utf-8", "application/fhir+json"),
        ("application/json", "application/fhir+json"),
        ("text/json", "application/fhir+json"),
        ("xml", "application/fhir+xml"),
        ("application/fhir+xml;fhirVersion=4.0", "application/fhir+xml"),
        ("text/xml", "application/fhir+xml"),
    ],
)
def test_format_values(client, value, content_type):
    """``_format`` takes the mime types of http.html#mime-type, with their parameters."""
    pid = _create(client).json()["id"]
    for url in (f"/fhir/Patient/{pid}", "/fhir/Patient", "/fhir/metadata"):
        r = client.get(url, params={"_format": value})
        assert r.status_code == 200, (url, r.text)
        assert r.headers["content-type"].split(";")[0] == content_type


def test_an_unknown_format_is_406(client):
    r = client.get("/fhir/metadata", params={"_format": "text/html"})
    assert r.status_code == 406 and r.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize(
    "accept", ["application/fhir+json;fhirVersion=4.0", "application/fhir+json; q=1; fhirVersion=4.0", "application/json, */*;q=0.5"]
)
def test_accept_with_parameters(client, accept):
    pid = _create(client).json()["id"]
    r = client.get(f"/fhir/Patient/{pid}", headers={"Accept": accept})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/fhir+json")


def test_form_search_with_a_charset(client):
    _create(client)
    r = client.post(
        "/fhir/Patient/_search", content=b"gender=female", headers={"Content-Type": "application/x-www-form-urlencoded; charset=UTF-8"}
    )
    assert r.status_code == 200 and r.json()["total"] == 1


# ----------------------------------------------------------------------------- Prefer


@pytest.mark.parametrize(
    "prefer", ["return=minimal", "return = minimal", 'return="minimal"', " RETURN=Minimal ", "respond-async, return=minimal"]
)
def test_prefer_return_minimal_spellings(client, prefer):
    """RFC 7240: names are case-insensitive, whitespace around ``=`` and quotes allowed."""
    r = _create(client, Prefer=prefer)
    assert r.status_code == 201 and r.content == b""
    assert r.headers["location"]


@pytest.mark.parametrize("prefer", ["return=OperationOutcome", "return=operationoutcome", "return = OperationOutcome"])
def test_prefer_return_operation_outcome_spellings(client, prefer):
    r = _create(client, Prefer=prefer)
    assert r.status_code == 201 and r.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize("prefer", ["handling=strict", "handling = strict", "HANDLING=Strict", "return=minimal, handling=strict"])
def test_prefer_handling_strict_spellings(client, prefer):
    r = client.get("/fhir/Patient?gender=female&unknown-param=1", headers={"Prefer": prefer})
    assert r.status_code == 400, r.text


# ----------------------------------------------------------------------------- GET [type]/_search


def test_get_with_search_is_the_search(client):
    """HAPI's client set to its GET_WITH_SEARCH style sends ``GET [base]/Patient/_search?...``;
    that was 405 ("GET is not allowed"). It is the search, at type and system level, in a Bundle
    entry too, and HEAD of it is the GET without the body."""
    pid = _create(client).json()["id"]
    plain = client.get(f"/fhir/Patient?identifier={NIK}|3204154506900003").json()
    by_search = client.get(f"/fhir/Patient/_search?identifier={NIK}|3204154506900003")
    assert by_search.status_code == 200, by_search.text
    assert [e["resource"]["id"] for e in by_search.json()["entry"]] == [pid] == [e["resource"]["id"] for e in plain["entry"]]
    assert by_search.json()["link"][0]["url"].startswith("http://testserver/fhir/Patient?")  # the self link: the search
    system = client.get("/fhir/_search?_type=Patient&_id=" + pid)
    assert system.status_code == 200 and [e["resource"]["id"] for e in system.json()["entry"]] == [pid]
    head = client.head(f"/fhir/Patient/_search?_id={pid}")
    assert head.status_code == 200 and head.content == b""
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [{"request": {"method": "GET", "url": f"Patient/_search?_id={pid}"}}]}
    entry = client.post("/fhir", json=batch).json()["entry"][0]
    assert entry["response"]["status"].startswith("200") and entry["resource"]["entry"][0]["resource"]["id"] == pid
    # only a type or the base takes _search: Patient/[id]/_search is no read
    assert client.get(f"/fhir/Patient/{pid}/_search").status_code in (404, 405)
    unknown = client.get("/fhir/Nope/_search?x=1")  # answered as the search of an unknown type
    assert unknown.status_code == 404 and "Nope" in unknown.json()["issue"][0]["diagnostics"]
    # POST _search is unchanged, and a resource id "_search" is not an id (ids have no underscore)
    assert client.post("/fhir/Patient/_search", data={"_id": pid}).json()["entry"][0]["resource"]["id"] == pid


def test_get_with_search_in_token_mode_needs_the_types_scope(secured):
    """The ``_search`` form is rewritten before the guard: the same scope check as the search."""
    from tests.security.test_token_auth_http import auth, token_for

    other = token_for(secured, "system/Observation.read")
    refused = secured.get("/fhir/Patient/_search?gender=female", headers=auth(other))
    assert refused.status_code == 403 and refused.json()["resourceType"] == "OperationOutcome"
    reader = token_for(secured, "system/Patient.read")
    assert secured.get("/fhir/Patient/_search?gender=female", headers=auth(reader)).status_code == 200
