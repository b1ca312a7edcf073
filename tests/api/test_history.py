"""History at instance, type and system level (http.html#history)."""

from __future__ import annotations

import time

from tests.api.test_rest_crud import PATIENT, post, put
from tests.bundles import entries


def test_instance_history_lists_every_version_newest_first(client):
    pid = post(client, PATIENT).json()["id"]
    put(client, "Patient", pid, {**PATIENT, "id": pid, "active": True})
    client.delete(f"/fhir/Patient/{pid}")
    r = client.get(f"/fhir/Patient/{pid}/_history")
    assert r.status_code == 200
    bundle = r.json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "history"
    found = entries(bundle)
    assert [e["request"]["method"] for e in found] == ["DELETE", "PUT", "POST"]
    assert [e["response"]["etag"] for e in found] == ['W/"3"', 'W/"2"', 'W/"1"']
    assert "resource" not in found[0]
    assert found[1]["resource"]["active"] is True
    assert found[2]["request"]["url"] == "Patient"
    assert found[1]["request"]["url"] == f"Patient/{pid}"
    assert found[2]["response"]["status"].startswith("201")
    assert found[2]["fullUrl"] == f"http://testserver/fhir/Patient/{pid}"


def test_type_and_system_history(client):
    post(client, PATIENT)
    post(client, {"resourceType": "Organization", "name": "RSUD Kota"}, "Organization")
    assert len(entries(client.get("/fhir/Patient/_history").json())) == 1
    assert len(entries(client.get("/fhir/Organization/_history").json())) == 1
    assert len(entries(client.get("/fhir/_history").json())) == 2


def test_history_count_pages_walk_every_version_once(client):
    ids = {post(client, {**PATIENT, "birthDate": f"1990-01-{d:02d}"}).json()["id"] for d in range(1, 8)}
    seen: list[str] = []
    url = "/fhir/Patient/_history?_count=3"
    pages = 0
    while url:
        bundle = client.get(url).json()
        pages += 1
        seen += [e["resource"]["id"] for e in entries(bundle)]
        assert len(entries(bundle)) <= 3
        nxt = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
        # a write between pages must not disturb the walk
        post(client, {**PATIENT, "birthDate": "2000-01-01"}) if pages == 1 else None
        url = nxt[0].replace("http://testserver", "") if nxt else None
    assert pages == 3
    assert sorted(seen) == sorted(ids)


def test_history_since_and_at(client):
    pid = post(client, PATIENT).json()["id"]
    time.sleep(0.01)
    v2 = put(client, "Patient", pid, {**PATIENT, "id": pid, "active": True})
    since = v2.json()["meta"]["lastUpdated"]
    put(client, "Patient", pid, {**PATIENT, "id": pid, "active": False})
    r = client.get(f"/fhir/Patient/{pid}/_history", params={"_since": since})
    assert [e["response"]["etag"] for e in entries(r.json())] == ['W/"3"', 'W/"2"']
    at = client.get(f"/fhir/Patient/{pid}/_history", params={"_at": since})
    assert [e["response"]["etag"] for e in entries(at.json())] == ['W/"2"']
    assert entries(client.get(f"/fhir/Patient/{pid}/_history", params={"_at": "1999"}).json()) == []


def test_history_rejects_bad_parameters(client):
    for params in ({"_count": "-1"}, {"_since": "yesterday"}, {"_at": "2020-13"}, {"_page_token": "!!"}, {"_foo": "1"}):
        r = client.get("/fhir/_history", params=params)
        assert r.status_code == 400, params
        assert r.json()["resourceType"] == "OperationOutcome"


def test_history_of_unknown_resource_is_404(client):
    assert client.get("/fhir/Patient/nope/_history").status_code == 404


def test_history_since_at_the_end_of_time_is_not_a_server_error(client):
    r = client.get("/fhir/_history", params={"_since": "9999-12-31T23:59:59.999999Z"})
    assert r.status_code == 200
    assert entries(r.json()) == []


def test_history_count_zero_is_an_empty_page_without_a_next_link(client):
    """``_count=0`` (as in a search: no entries) answers an empty history Bundle, with no next
    page to follow (each would be empty too); it was a 500."""
    pid = post(client, PATIENT).json()["id"]
    for url in (f"/fhir/Patient/{pid}/_history", "/fhir/Patient/_history", "/fhir/_history"):
        r = client.get(url, params={"_count": "0"})
        assert r.status_code == 200, (url, r.text)
        bundle = r.json()
        assert bundle["type"] == "history" and entries(bundle) == []
        assert [link["relation"] for link in bundle.get("link", [])] == ["self"]
