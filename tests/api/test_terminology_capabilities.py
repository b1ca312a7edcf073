"""``GET [base]/metadata?mode=terminology`` (http.html#capabilities): a TerminologyCapabilities
that tells what the terminology engine really serves; full and normative keep answering the
CapabilityStatement, any other mode is a 400."""

from __future__ import annotations

import pytest

from fhir_server.model.validate import validate_resource
from terminology.engine import default_engine
from terminology.urls import KEMENDAGRI_WILAYAH

OPERATIONS = ("lookup", "validate-code", "subsumes", "expand", "translate")


def _terminology(client) -> dict:
    r = client.get("/fhir/metadata", params={"mode": "terminology"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/fhir+json")
    return r.json()


def test_mode_terminology_is_a_valid_r4_terminology_capabilities(client):
    tc = _terminology(client)
    assert tc["resourceType"] == "TerminologyCapabilities"
    assert tc["kind"] == "instance" and tc["implementation"]["url"] == "http://testserver/fhir"
    assert [i for i in validate_resource(tc) if i.severity in ("error", "fatal")] == []
    # the same validation as every write, and $validate
    assert client.post("/fhir/TerminologyCapabilities", json=tc).status_code == 201
    r = client.post("/fhir/TerminologyCapabilities/$validate", json=tc)
    assert all(i["severity"] not in ("error", "fatal") for i in r.json()["issue"])


def test_code_systems_are_those_the_engine_serves_with_their_versions(client):
    tc = _terminology(client)
    listed = {cs["uri"]: cs for cs in tc["codeSystem"]}
    assert len(listed) == len(tc["codeSystem"])  # tcp-6: each code system once
    registry = default_engine().registry
    for uri, cs in listed.items():
        provider = registry.code_system(uri)
        assert provider is not None and provider.has_content(), uri
        for v in cs.get("version", []):
            assert registry.code_system(uri, v.get("code")) is not None
        assert sum(v["isDefault"] for v in cs.get("version", [])) <= 1
    regions = listed[KEMENDAGRI_WILAYAH]
    assert regions["version"][0]["code"] == registry.code_system(KEMENDAGRI_WILAYAH).version
    assert regions["version"][0]["isDefault"] is True
    assert "http://hl7.org/fhir/administrative-gender" in listed


def test_a_stored_code_system_is_listed_with_its_version(client):
    body = {
        "resourceType": "CodeSystem",
        "url": "http://example.org/fhir/CodeSystem/tc-test",
        "version": "2.1",
        "status": "active",
        "content": "complete",
        "concept": [{"code": "a", "display": "A"}],
    }
    assert client.post("/fhir/CodeSystem", json=body).status_code == 201
    listed = {cs["uri"]: cs for cs in _terminology(client)["codeSystem"]}
    assert [v["code"] for v in listed[body["url"]]["version"]] == ["2.1"]
    assert client.get("/fhir/CodeSystem/$lookup", params={"system": body["url"], "code": "a"}).status_code == 200


def test_flags_are_only_as_true_as_the_operations_are(client):
    tc = _terminology(client)
    cs = client.get("/fhir/metadata").json()
    ops = {o["name"] for r in cs["rest"][0]["resource"] if r["type"] in ("CodeSystem", "ValueSet", "ConceptMap") for o in r["operation"]}
    assert set(OPERATIONS) <= ops
    assert "closure" not in ops and "closure" not in tc  # $closure is not served
    assert tc["validateCode"] == {"translations": False}
    assert tc["translation"] == {"needsMap": False}
    expansion = tc["expansion"]
    assert expansion["paging"] is True and expansion["hierarchical"] is False
    assert {p["name"] for p in expansion["parameter"]} == {"filter", "count", "offset", "valueSetVersion"}


def test_translation_needs_no_map(client):
    """needsMap false: $translate finds the map from source and target alone."""
    cm = next(m for m in default_engine().registry.concept_maps() if m.get("group") and m["group"][0].get("element"))
    group = cm["group"][0]
    code = group["element"][0]["code"]
    r = client.get("/fhir/ConceptMap/$translate", params={"system": group.get("source"), "code": code})
    assert r.status_code == 200, r.text
    assert any(p["name"] == "match" for p in r.json()["parameter"])


@pytest.mark.parametrize("mode", [None, "full", "normative", ""])
def test_other_modes_answer_the_capability_statement(client, mode):
    r = client.get("/fhir/metadata", params={"mode": mode} if mode is not None else {})
    assert r.status_code == 200 and r.json()["resourceType"] == "CapabilityStatement"


@pytest.mark.parametrize("query", ["mode=bogus", "mode=Terminology", "mode=full&mode=terminology"])
def test_an_unknown_mode_is_a_400_operation_outcome(client, query):
    r = client.get(f"/fhir/metadata?{query}")
    assert r.status_code == 400
    assert r.json()["resourceType"] == "OperationOutcome"


def test_mode_terminology_in_xml(client):
    r = client.get("/fhir/metadata", params={"mode": "terminology", "_format": "xml"})
    assert r.status_code == 200
    assert r.text.lstrip().startswith("<TerminologyCapabilities") or "<TerminologyCapabilities " in r.text


def test_mode_terminology_as_a_batch_entry(client):
    entries = [
        {"request": {"method": "GET", "url": "metadata?mode=terminology"}},
        {"request": {"method": "GET", "url": "metadata?mode=normative"}},
        {"request": {"method": "GET", "url": "metadata?mode=bogus"}},
    ]
    r = client.post("/fhir", json={"resourceType": "Bundle", "type": "batch", "entry": entries})
    assert r.status_code == 200, r.text
    got = r.json()["entry"]
    assert got[0]["resource"]["resourceType"] == "TerminologyCapabilities"
    assert got[1]["resource"]["resourceType"] == "CapabilityStatement"
    assert got[2]["response"]["status"].startswith("400")
    r = client.post("/fhir", json={"resourceType": "Bundle", "type": "transaction", "entry": entries[:1]})
    assert r.status_code == 200, r.text
    assert r.json()["entry"][0]["resource"]["resourceType"] == "TerminologyCapabilities"
