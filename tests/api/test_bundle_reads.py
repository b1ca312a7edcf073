"""GET entries of batch and transaction Bundles answer as the same GET on the route does.

R4 http.html#transaction: a Bundle entry's ``request.url`` is "the URL for this entry, relative
to the root (the address to which the request is posted)", and any interaction may be an entry:
``metadata``, ``_history`` at every level, vread, system search. They were refused (404/400).
"""

from __future__ import annotations

import orjson
import pytest

from tests.security.test_token_auth_http import auth, token_for

H = {"Content-Type": "application/fhir+json"}
PATIENT = {"resourceType": "Patient", "id": "123", "gender": "female"}


def _bundle(kind: str, *requests: dict, entries: list[dict] | None = None) -> bytes:
    return orjson.dumps({"resourceType": "Bundle", "type": kind, "entry": [*(entries or []), *({"request": r} for r in requests)]})


def _seed(client) -> None:
    assert client.put("/fhir/Patient/123", content=orjson.dumps(PATIENT), headers=H).status_code == 201
    changed = {**PATIENT, "gender": "male"}
    assert client.put("/fhir/Patient/123", content=orjson.dumps(changed), headers=H).status_code == 200


def _same(route: dict, entry: dict) -> None:
    """The entry's resource is the route's answer (a Bundle's own id and timestamps aside)."""
    assert entry["resourceType"] == route["resourceType"]
    if route["resourceType"] == "Bundle":
        assert (entry["type"], entry.get("total")) == (route["type"], route.get("total"))
        assert [e.get("fullUrl") for e in entry.get("entry", [])] == [e.get("fullUrl") for e in route.get("entry", [])]
        assert [e.get("resource") for e in entry.get("entry", [])] == [e.get("resource") for e in route.get("entry", [])]
    elif route["resourceType"] == "CapabilityStatement":
        assert entry["rest"] == route["rest"]
    else:
        assert entry == route


URLS = ["metadata", "_history", "Patient/_history", "Patient/123/_history", "Patient/123/_history/1", "?_type=Patient", "Patient/123"]


@pytest.mark.parametrize("kind", ["batch", "transaction"])
@pytest.mark.parametrize("url", URLS)
def test_a_get_entry_answers_as_the_route(client, kind, url):
    _seed(client)
    r = client.post("/fhir", content=_bundle(kind, {"method": "GET", "url": url}), headers=H)
    assert r.status_code == 200, r.text
    entry = r.json()["entry"][0]
    assert entry["response"]["status"].startswith("200"), entry
    route = client.get("/fhir/" + url if not url.startswith("?") else "/fhir" + url)
    assert route.status_code == 200
    _same(route.json(), entry["resource"])


@pytest.mark.parametrize("kind", ["batch", "transaction"])
def test_a_head_entry_has_the_status_and_no_resource(client, kind):
    _seed(client)
    r = client.post("/fhir", content=_bundle(kind, {"method": "HEAD", "url": "Patient/123/_history"}), headers=H)
    entry = r.json()["entry"][0]
    assert entry["response"]["status"].startswith("200") and "resource" not in entry


@pytest.mark.parametrize("kind", ["batch", "transaction"])
def test_history_of_an_unknown_resource_is_404_as_on_the_route(client, kind):
    assert client.get("/fhir/Patient/nobody/_history").status_code == 404
    r = client.post("/fhir", content=_bundle(kind, {"method": "GET", "url": "Patient/nobody/_history"}), headers=H)
    status = r.json()["entry"][0]["response"]["status"] if kind == "batch" else str(r.status_code)
    assert status.startswith("404")


def test_a_transaction_history_entry_sees_the_transaction_own_writes(client):
    """GETs run last in a transaction, in its database transaction (http.html#trules)."""
    create = {
        "fullUrl": "urn:uuid:0d2e4ac3-8b7b-4f1e-9a55-3a6f4f6f1b10",
        "resource": PATIENT,
        "request": {"method": "POST", "url": "Patient"},
    }
    r = client.post("/fhir", content=_bundle("transaction", {"method": "GET", "url": "Patient/_history"}, entries=[create]), headers=H)
    assert r.status_code == 200, r.text
    created, history = r.json()["entry"]
    new_id = created["response"]["location"].split("/")[1]
    assert [e["resource"]["id"] for e in history["resource"]["entry"]] == [new_id]


@pytest.mark.parametrize("kind", ["batch", "transaction"])
def test_writes_to_read_only_paths_are_still_refused(client, kind):
    r = client.post("/fhir", content=_bundle(kind, {"method": "DELETE", "url": "Patient/123/_history"}), headers=H)
    status = r.json()["entry"][0]["response"]["status"] if kind == "batch" else str(r.status_code)
    assert status.startswith("400")


@pytest.mark.slow
def test_token_mode_history_entries_need_the_route_scopes(secured):
    """A token that may read Patients but not search every type gets 403 for ``GET _history`` in
    a batch, as on the route, and 401/403 never leak data; metadata needs nothing."""
    token = token_for(secured, "system/Patient.rs")
    batch = _bundle(
        "batch", {"method": "GET", "url": "_history"}, {"method": "GET", "url": "metadata"}, {"method": "GET", "url": "Patient/_history"}
    )
    assert secured.get("/fhir/_history", headers=auth(token)).status_code == 403
    r = secured.post("/fhir", content=batch, headers=auth(token))
    assert r.status_code == 200, r.text
    statuses = [e["response"]["status"][:3] for e in r.json()["entry"]]
    assert statuses == ["403", "200", "200"]
    r = secured.post("/fhir", content=_bundle("transaction", {"method": "GET", "url": "_history"}), headers=auth(token))
    assert r.status_code == 403


def test_batch_operation_entries_answer_as_the_operation_routes(client):
    """A batch entry may be an operation (http.html#transaction: "any interaction"): GET by its
    query, POST with the entry's resource as the body. It was 400 "not supported in a Bundle"."""
    _seed(client)
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": "Patient/123"}}
    assert client.post("/fhir/Observation", content=orjson.dumps(obs), headers=H).status_code == 201
    invalid = {"resourceType": "Patient", "gender": "nope"}
    batch = _bundle("batch", {"method": "GET", "url": "Patient/123/$everything"})
    everything = client.post("/fhir", content=batch, headers=H).json()["entry"][0]
    assert everything["response"]["status"].startswith("200")
    _same(client.get("/fhir/Patient/123/$everything").json(), everything["resource"])
    entry = {"request": {"method": "POST", "url": "Patient/$validate"}, "resource": invalid}
    validated = client.post("/fhir", content=orjson.dumps({"resourceType": "Bundle", "type": "batch", "entry": [entry]}), headers=H)
    route = client.post("/fhir/Patient/$validate", content=orjson.dumps(invalid), headers=H)
    assert validated.json()["entry"][0]["resource"] == route.json()
    unknown = client.post("/fhir", content=_bundle("batch", {"method": "GET", "url": "Patient/$nonsense"}), headers=H)
    assert unknown.json()["entry"][0]["response"]["status"].startswith("404")


@pytest.mark.parametrize(
    "request_",
    [{"method": "GET", "url": "$export"}, {"method": "HEAD", "url": "$export"}, {"method": "PUT", "url": "Patient/$meta"}],
)
def test_operation_entries_without_a_bundle_form_are_400(client, request_):
    """``$export`` is the asynchronous request pattern (a HEAD of an operation is its GET without
    the body: tests/api/test_head.py)."""
    r = client.post("/fhir", content=_bundle("batch", request_), headers=H)
    assert r.json()["entry"][0]["response"]["status"].startswith("400")


def test_an_operation_in_a_transaction_is_400_naming_the_batch(client):
    """An operation runs its own reads and writes: it cannot be part of the transaction's one
    database transaction."""
    _seed(client)
    r = client.post("/fhir", content=_bundle("transaction", {"method": "GET", "url": "Patient/123/$everything"}), headers=H)
    assert r.status_code == 400 and "batch" in r.json()["issue"][0]["diagnostics"]


@pytest.mark.slow
def test_token_mode_operation_entries_need_the_route_scopes(secured):
    token = token_for(secured, "system/Observation.rs")
    batch = _bundle("batch", {"method": "GET", "url": "Patient/x/$everything"})
    route = secured.get("/fhir/Patient/x/$everything", headers=auth(token))
    assert route.status_code == 403
    assert secured.post("/fhir", content=batch, headers=auth(token)).json()["entry"][0]["response"]["status"].startswith("403")


def _audit_events_of_writes(client) -> None:
    """Two writes of Patient/123: their AuditEvents commit with the writes (docs/audit.md), so a
    search for them gives the same answer every time it is asked."""
    _seed(client)


AUDIT_SEARCH = "AuditEvent?entity=Patient/123&action=U&_count=1"


@pytest.mark.parametrize("kind", ["batch", "transaction"])
def test_an_audit_event_search_entry_answers_as_the_route(client, kind):
    """The audit trail is served from its own table: a transaction's GET entries ran the
    resource search instead and found nothing (a searchset of total 0); reads by id 404."""
    _audit_events_of_writes(client)
    route = client.get("/fhir/" + AUDIT_SEARCH)
    assert route.status_code == 200 and len(route.json()["entry"]) == 1
    event_id = route.json()["entry"][0]["resource"]["id"]
    r = client.post(
        "/fhir",
        content=_bundle(kind, {"method": "GET", "url": AUDIT_SEARCH}, {"method": "GET", "url": f"AuditEvent/{event_id}"}),
        headers=H,
    )
    assert r.status_code == 200, r.text
    search, read = r.json()["entry"]
    assert search["response"]["status"].startswith("200") and read["response"]["status"].startswith("200"), r.text
    _same(route.json(), search["resource"])
    assert search["resource"]["link"] == route.json()["link"]
    assert read["resource"] == client.get(f"/fhir/AuditEvent/{event_id}").json()
    missing = client.post("/fhir", content=_bundle(kind, {"method": "GET", "url": "AuditEvent/nope"}), headers=H)
    status = missing.json()["entry"][0]["response"]["status"] if kind == "batch" else str(missing.status_code)
    assert status.startswith("404")


@pytest.mark.slow
def test_token_mode_audit_event_entries_need_the_audit_scope(secured):
    """A wildcard never covers the audit trail (docs/security.md): the entry is refused as the
    route is, in a batch (its own 403) and a transaction (the whole Bundle)."""
    everything = token_for(secured, "system/*.rs")
    auditor = token_for(secured, "system/AuditEvent.rs")
    assert secured.get("/fhir/" + AUDIT_SEARCH, headers=auth(everything)).status_code == 403
    batch = _bundle("batch", {"method": "GET", "url": AUDIT_SEARCH}, {"method": "GET", "url": "AuditEvent/x"})
    statuses = [e["response"]["status"][:3] for e in secured.post("/fhir", content=batch, headers=auth(everything)).json()["entry"]]
    assert statuses == ["403", "403"]
    transaction = _bundle("transaction", {"method": "GET", "url": AUDIT_SEARCH})
    assert secured.post("/fhir", content=transaction, headers=auth(everything)).status_code == 403
    r = secured.post("/fhir", content=transaction, headers=auth(auditor))
    assert r.status_code == 200 and r.json()["entry"][0]["resource"]["type"] == "searchset"


def test_system_and_type_level_operation_entries_answer_as_the_routes(client):
    """``GET $meta``, ``GET Patient/$meta`` and ``POST Patient/123/$meta-add`` (a writing
    operation) in a batch answer what the same requests alone answer."""
    _seed(client)
    tag = {"resourceType": "Parameters", "parameter": [{"name": "meta", "valueMeta": {"tag": [{"system": "urn:t", "code": "x"}]}}]}
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"request": {"method": "POST", "url": "Patient/123/$meta-add"}, "resource": tag},
            {"request": {"method": "GET", "url": "$meta"}},
            {"request": {"method": "GET", "url": "Patient/$meta/"}},
        ],
    }
    r = client.post("/fhir", content=orjson.dumps(batch), headers=H)
    assert r.status_code == 200, r.text
    added, system, type_level = (e["resource"] for e in r.json()["entry"])
    assert added == client.get("/fhir/Patient/123/$meta").json()
    assert system == client.get("/fhir/$meta").json()
    assert type_level == client.get("/fhir/Patient/$meta").json()
    assert {"system": "urn:t", "code": "x"} in type_level["parameter"][0]["valueMeta"]["tag"]


@pytest.mark.slow
def test_token_mode_a_writing_operation_entry_needs_the_write_scope(secured):
    reader = token_for(secured, "system/Patient.rs")
    tag = {"resourceType": "Parameters", "parameter": [{"name": "meta", "valueMeta": {"tag": [{"system": "urn:t", "code": "x"}]}}]}
    route = secured.post("/fhir/Patient/x/$meta-add", content=orjson.dumps(tag), headers=auth(reader))
    assert route.status_code == 403
    entry = {"request": {"method": "POST", "url": "Patient/x/$meta-add"}, "resource": tag}
    r = secured.post("/fhir", content=orjson.dumps({"resourceType": "Bundle", "type": "batch", "entry": [entry]}), headers=auth(reader))
    assert r.json()["entry"][0]["response"]["status"].startswith("403")


@pytest.mark.parametrize("kind", ["batch", "transaction"])
def test_a_304_entry_is_audited_with_the_status_it_answered(client, kind):
    """A GET entry answered 304 (its ``ifNoneMatch`` names the current version) is audited as 304,
    as the route's conditional read is; a transaction's GET entries were all audited as 200."""
    from tests.security.test_audit_trail_http import _events

    _seed(client)
    earlier = {e["id"] for e in _events(client, _count="1000")}  # also those other tests' reads queued
    entries = [
        {"request": {"method": "GET", "url": "Patient/123", "ifNoneMatch": 'W/"2"'}},
        {"request": {"method": "GET", "url": "Patient/123/_history/1"}},
    ]
    r = client.post("/fhir", content=orjson.dumps({"resourceType": "Bundle", "type": kind, "entry": entries}), headers=H)
    assert [e["response"]["status"] for e in r.json()["entry"]] == ["304 Not Modified", "200 OK"]
    events = [e for e in _events(client, _count="1000") if e["id"] not in earlier]
    read = [e["outcomeDesc"] for e in events if e["subtype"][0]["code"] == "read"]
    vread = [e["outcomeDesc"] for e in events if e["subtype"][0]["code"] == "vread"]
    assert (read, vread) == (["HTTP 304"], ["HTTP 200"])
