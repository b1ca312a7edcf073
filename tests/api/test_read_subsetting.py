"""``_summary`` and ``_elements`` on read, vread and ``GET metadata`` (R4 http.html#read, search.html
#summary / #elements): applied as on a search, by the same code (search/subsetting.py), and the
result tagged SUBSETTED. They were ignored: the whole resource was answered, and
``metadata?_summary=true`` sent the whole ~870 KB CapabilityStatement.

``_summary=count`` has no meaning for one resource (400), an unknown ``_summary`` is 400 as on a
search. The ETag stays the version's (as HAPI's): it names the version, not the bytes sent.
"""

from __future__ import annotations

import orjson
import pytest

from tests.security.test_audit_trail_http import _events
from tests.security.test_token_auth_http import auth, token_for

H = {"Content-Type": "application/fhir+json"}
SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}
PATIENT = {
    "resourceType": "Patient",
    "id": "p1",
    "text": {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">Aminah</div>'},
    "gender": "female",
    "birthDate": "1990-06-05",
    "name": [{"family": "Aminah"}],
    "contact": [{"name": {"family": "Budi"}}],
    "link": [{"other": {"reference": "Patient/p2"}, "type": "seealso", "extension": [{"url": "http://x.id/e", "valueString": "v"}]}],
}


def _seed(client) -> None:
    assert client.put("/fhir/Patient/p1", content=orjson.dumps(PATIENT), headers=H).status_code == 201


def _tagged(doc: dict) -> bool:
    return SUBSETTED in doc["meta"].get("tag", [])


@pytest.mark.parametrize("path", ["/fhir/Patient/p1", "/fhir/Patient/p1/_history/1"])
def test_summary_and_elements_on_read_and_vread(client, path):
    _seed(client)
    whole = client.get(path)
    summary = client.get(path, params={"_summary": "true"})
    assert summary.status_code == 200, summary.text
    doc = summary.json()
    # top-level isSummary elements and mandatory ones; a backbone keeps its isSummary children
    assert set(doc) == {"resourceType", "id", "meta", "gender", "birthDate", "name", "link"}
    assert doc["link"] == [{"other": {"reference": "Patient/p2"}, "type": "seealso"}]  # link.extension is not isSummary
    assert _tagged(doc)
    # the version's validators: they name the version, whatever part of it is sent (as HAPI does)
    assert summary.headers["etag"] == whole.headers["etag"] == 'W/"1"'
    assert summary.headers["last-modified"] == whole.headers["last-modified"]

    text = client.get(path, params={"_summary": "text"}).json()
    assert set(text) == {"resourceType", "id", "meta", "text"} and _tagged(text)
    data = client.get(path, params={"_summary": "data"}).json()
    assert "text" not in data and data["contact"] == PATIENT["contact"] and _tagged(data)
    elements = client.get(path, params={"_elements": "birthDate,name"}).json()
    assert set(elements) == {"resourceType", "id", "meta", "birthDate", "name"} and _tagged(elements)
    # false, or an empty value: the stored resource, untouched
    assert client.get(path, params={"_summary": "false"}).content == whole.content
    assert client.get(path, params={"_summary": ""}).content == whole.content
    assert not _tagged(whole.json())


@pytest.mark.parametrize("path", ["/fhir/Patient/p1", "/fhir/Patient/p1/_history/1", "/fhir/metadata"])
@pytest.mark.parametrize(("value", "said"), [("count", "count"), ("everything", "everything")])
def test_summary_count_and_unknown_values_are_400(client, path, value, said):
    _seed(client)
    r = client.get(path, params={"_summary": value})
    assert r.status_code == 400, r.text
    assert r.json()["resourceType"] == "OperationOutcome" and said in r.json()["issue"][0]["diagnostics"]


def test_metadata_summary_is_much_smaller(client):
    whole = client.get("/fhir/metadata")
    summary = client.get("/fhir/metadata", params={"_summary": "true"})
    assert summary.status_code == 200, summary.text
    assert len(summary.content) * 10 < len(whole.content), (len(summary.content), len(whole.content))
    doc = summary.json()
    assert _tagged(doc) and doc["fhirVersion"] == "4.0.1" and doc["kind"] == "instance"
    resource = doc["rest"][0]["resource"][0]
    # rest.resource keeps type, profile, operation (isSummary); interaction, searchParam... are not
    assert "type" in resource and "searchParam" not in resource and "interaction" not in resource
    assert {r["type"] for r in doc["rest"][0]["resource"]} == {r["type"] for r in whole.json()["rest"][0]["resource"]}
    assert "searchParam" not in doc["rest"][0] and "interaction" not in doc["rest"][0]
    elements = client.get("/fhir/metadata", params={"_elements": "fhirVersion"}).json()
    assert "rest" not in elements and elements["fhirVersion"] == "4.0.1" and _tagged(elements)
    terminology = client.get("/fhir/metadata", params={"mode": "terminology", "_summary": "true"}).json()
    assert terminology["resourceType"] == "TerminologyCapabilities" and _tagged(terminology)
    assert "codeSystem" not in terminology  # not isSummary


@pytest.mark.parametrize(
    "path", ["/fhir/Patient/p1?_summary=true", "/fhir/Patient/p1/_history/1?_elements=gender", "/fhir/metadata?_summary=true"]
)
def test_head_is_the_subsetted_get_without_its_body(client, path):
    _seed(client)
    get, head = client.get(path), client.head(path)
    assert head.status_code == get.status_code == 200 and head.content == b""
    same = {k: v for k, v in get.headers.items() if k != "date"}
    assert {k: v for k, v in head.headers.items() if k != "date"} == same
    assert int(head.headers["content-length"]) == get.num_bytes_downloaded  # the bytes sent (gzip when large)


def test_xml_and_pretty_of_a_subsetted_read(client):
    _seed(client)
    xml = client.get("/fhir/Patient/p1", params={"_summary": "true", "_format": "xml"})
    assert xml.status_code == 200 and b"SUBSETTED" in xml.content and b"contact" not in xml.content
    pretty = client.get("/fhir/Patient/p1", params={"_elements": "gender", "_pretty": "true"})
    assert b"\n" in pretty.content and set(pretty.json()) == {"resourceType", "id", "meta", "gender"}


def test_a_conditional_read_of_a_subset_is_304_on_the_versions_etag(client):
    _seed(client)
    r = client.get("/fhir/Patient/p1", params={"_summary": "true"}, headers={"If-None-Match": 'W/"1"'})
    assert r.status_code == 304 and r.headers["etag"] == 'W/"1"'


@pytest.mark.parametrize("kind", ["batch", "transaction"])
def test_bundle_read_entries_are_subsetted_as_the_route(client, kind):
    _seed(client)
    urls = ["Patient/p1?_summary=true", "Patient/p1/_history/1?_elements=gender", "metadata?_summary=true", "Patient/p1?_summary=count"]
    entries = [{"request": {"method": "GET", "url": u}} for u in urls[: 3 if kind == "transaction" else 4]]
    r = client.post("/fhir", content=orjson.dumps({"resourceType": "Bundle", "type": kind, "entry": entries}), headers=H)
    assert r.status_code == 200, r.text
    got = r.json()["entry"]
    assert got[0]["resource"] == client.get("/fhir/Patient/p1?_summary=true").json()
    assert got[1]["resource"] == client.get("/fhir/Patient/p1/_history/1?_elements=gender").json()
    assert _tagged(got[2]["resource"]) and "searchParam" not in got[2]["resource"]["rest"][0]["resource"][0]
    if kind == "batch":
        assert got[3]["response"]["status"].startswith("400")
    else:
        bad = {"resourceType": "Bundle", "type": kind, "entry": [{"request": {"method": "GET", "url": urls[3]}}]}
        assert client.post("/fhir", content=orjson.dumps(bad), headers=H).status_code == 400


def test_a_subsetted_read_is_audited_as_a_read(client):
    _seed(client)
    assert client.get("/fhir/Patient/p1", params={"_summary": "true"}).status_code == 200
    reads = [e for e in _events(client, _count="50") if e["subtype"][0]["code"] == "read"]
    assert any(e["entity"][0]["what"]["reference"] == "Patient/p1" and e["outcome"] == "0" for e in reads)


def test_token_mode_a_subsetted_read_needs_the_read_scope(secured):
    writer = token_for(secured, "system/*.cruds")
    encounters = token_for(secured, "system/Encounter.rs")
    assert secured.put("/fhir/Patient/p1", content=orjson.dumps(PATIENT), headers=auth(writer)).status_code == 201
    for path in ("/fhir/Patient/p1", "/fhir/Patient/p1/_history/1"):
        for params in ({"_summary": "true"}, {"_elements": "id"}, {"_summary": "count"}):
            r = secured.get(path, params=params, headers=auth(encounters))
            assert r.status_code == 403, (path, params, r.text)  # refused before the parameters are read
        assert secured.get(path, params={"_summary": "true"}).status_code == 401
        assert secured.get(path, params={"_summary": "true"}, headers=auth(writer)).status_code == 200
    # metadata needs no token, subsetted or not
    assert secured.get("/fhir/metadata", params={"_summary": "true"}).status_code == 200
