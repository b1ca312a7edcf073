"""Terminology operations over HTTP: $lookup, $validate-code, $expand, $translate, $subsumes."""

from __future__ import annotations

import orjson
import pytest

WILAYAH = "https://fhir-server.id/CodeSystem/kemendagri-wilayah"


def params(resp) -> dict:
    out: dict = {}
    for p in resp.json()["parameter"]:
        out.setdefault(p["name"], []).append(p)
    return out


def test_lookup_region_with_parent_and_level(client):
    r = client.get("/fhir/CodeSystem/$lookup", params={"system": WILAYAH, "code": "3204152003"})
    assert r.status_code == 200, r.text
    p = params(r)
    assert p["display"][0]["valueString"] == "Warnasari"
    props = {part["part"][0]["valueCode"]: part["part"][1] for part in p["property"]}
    assert props["parent"]["valueCode"] == "320415"
    assert client.get("/fhir/CodeSystem/$lookup", params={"system": WILAYAH, "code": "9999999999"}).status_code == 404


def test_expand_villages_of_a_district_with_filter_and_paging(client):
    vs = {
        "resourceType": "ValueSet",
        "status": "active",
        "compose": {"include": [{"system": WILAYAH, "filter": [{"property": "parent", "op": "=", "value": "320415"}]}]},
    }
    body = {"resourceType": "Parameters", "parameter": [{"name": "valueSet", "resource": vs}, {"name": "count", "valueInteger": 3}]}
    r = client.post("/fhir/ValueSet/$expand", content=orjson.dumps(body), headers={"Content-Type": "application/fhir+json"})
    assert r.status_code == 200, r.text
    expansion = r.json()["expansion"]
    assert expansion["total"] > 3 and len(expansion["contains"]) == 3
    assert all(c["code"].startswith("320415") for c in expansion["contains"])
    filtered = client.get(
        "/fhir/ValueSet/$expand",
        params={"url": "https://fhir-server.id/ValueSet/kemendagri-wilayah-village", "filter": "warnasari", "count": "10"},
    )
    assert filtered.status_code == 200
    assert any(c["code"] == "3204152003" for c in filtered.json()["expansion"]["contains"])


def test_validate_code_and_translate(client):
    ok = client.get(
        "/fhir/ValueSet/$validate-code",
        params={
            "url": "https://fhir-server.id/ValueSet/dukcapil-status-kawin",
            "system": "https://fhir-server.id/CodeSystem/dukcapil-status-kawin",
            "code": "2",
        },
    )
    assert params(ok)["result"][0]["valueBoolean"] is True
    bad = client.get("/fhir/CodeSystem/$validate-code", params={"url": WILAYAH, "code": "32"})
    assert params(bad)["result"][0]["valueBoolean"] is True
    nope = client.get("/fhir/CodeSystem/$validate-code", params={"url": WILAYAH, "code": "99"})
    assert params(nope)["result"][0]["valueBoolean"] is False
    tr = client.get(
        "/fhir/ConceptMap/$translate",
        params={
            "url": "https://fhir-server.id/ConceptMap/dukcapil-status-kawin-to-v3-marital-status",
            "system": "https://fhir-server.id/CodeSystem/dukcapil-status-kawin",
            "code": "2",
        },
    )
    assert params(tr)["result"][0]["valueBoolean"] is True
    match = params(tr)["match"][0]["part"]
    assert any(part.get("valueCoding", {}).get("code") == "M" for part in match)


def test_subsumes_in_the_region_hierarchy(client):
    r = client.get("/fhir/CodeSystem/$subsumes", params={"system": WILAYAH, "codeA": "3204", "codeB": "3204152003"})
    assert params(r)["outcome"][0]["valueCode"] == "subsumes"


@pytest.mark.slow
def test_packaged_terminology_is_stored_searchable_and_instance_operations_work(app_client):
    from fhir_server.service.seed import seed_conformance

    seed_conformance(app_client.app.state.fhir.resources)
    found = app_client.get("/fhir/CodeSystem", params={"url": WILAYAH}).json()["entry"]
    assert len(found) == 1 and found[0]["resource"]["content"] == "not-present"
    by_name = app_client.get("/fhir/ValueSet", params={"name:contains": "wilayah"}).json()["entry"]
    assert len(by_name) >= 5
    lookup = app_client.get(f"/fhir/CodeSystem/{found[0]['resource']['id']}/$lookup", params={"code": "32"})
    assert lookup.status_code == 200 and params(lookup)["display"][0]["valueString"].upper() == "JAWA BARAT"


def test_a_client_code_system_is_served_after_it_is_stored(client):
    cs = {
        "resourceType": "CodeSystem",
        "url": "https://rs.example.id/CodeSystem/poli",
        "status": "active",
        "content": "complete",
        "concept": [{"code": "INT", "display": "Penyakit Dalam"}, {"code": "ANA", "display": "Anak"}],
    }
    assert client.post("/fhir/CodeSystem", content=orjson.dumps(cs), headers={"Content-Type": "application/fhir+json"}).status_code == 201
    r = client.get("/fhir/CodeSystem/$lookup", params={"system": cs["url"], "code": "ANA"})
    assert r.status_code == 200 and params(r)["display"][0]["valueString"] == "Anak"


def test_terminology_operations_are_advertised(app_client):
    rest = app_client.get("/fhir/metadata").json()["rest"][0]
    ops = {r["type"]: {o["name"] for o in r.get("operation", [])} for r in rest["resource"]}
    assert {"lookup", "validate-code", "subsumes"} <= ops["CodeSystem"]
    assert {"expand", "validate-code"} <= ops["ValueSet"]
    assert "translate" in ops["ConceptMap"]


def _patient_with_region(village: str, district: str = "320415") -> bytes:
    return orjson.dumps(
        {
            "resourceType": "Patient",
            "address": [
                {
                    "use": "home",
                    "extension": [
                        {
                            "url": "https://fhir.kemkes.go.id/r4/StructureDefinition/administrativeCode",
                            "extension": [
                                {"url": "province", "valueCode": "32"},
                                {"url": "city", "valueCode": "3204"},
                                {"url": "district", "valueCode": district},
                                {"url": "village", "valueCode": village},
                            ],
                        }
                    ],
                }
            ],
        }
    )


def test_region_codes_must_nest_and_be_well_formed(client):
    ok = client.post("/fhir/Patient", content=_patient_with_region("3204152003"), headers={"Content-Type": "application/fhir+json"})
    assert ok.status_code == 201
    nested_wrong = client.post(
        "/fhir/Patient", content=_patient_with_region("3171011001"), headers={"Content-Type": "application/fhir+json"}
    )
    assert nested_wrong.status_code == 422
    malformed = client.post(
        "/fhir/Patient", content=_patient_with_region("32.04.15.2003"), headers={"Content-Type": "application/fhir+json"}
    )
    assert malformed.status_code in (400, 422)
    unknown = client.post(
        "/fhir/Patient",
        content=_patient_with_region("3204159999"),
        headers={"Content-Type": "application/fhir+json", "Prefer": "return=OperationOutcome"},
    )
    assert unknown.status_code == 201  # decrees change codes: unknown but well-formed codes only warn
    assert any(i["severity"] == "warning" for i in unknown.json()["issue"])


def test_strict_region_codes_refuse_unknown_codes(tmp_path):
    from fastapi.testclient import TestClient

    from fhir_server.app import create_app
    from fhir_server.config import Settings

    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'strict.sqlite3'}", region_codes="strict"))
    with TestClient(app) as strict:
        r = strict.post("/fhir/Patient", content=_patient_with_region("3204159999"), headers={"Content-Type": "application/fhir+json"})
        assert r.status_code == 422


@pytest.mark.slow
def test_r4_core_value_sets_and_code_systems_are_served(app_client):
    from fhir_server.service.seed import seed_conformance

    seed_conformance(app_client.app.state.fhir.resources)
    vs = app_client.get("/fhir/ValueSet", params={"url": "http://hl7.org/fhir/ValueSet/administrative-gender"}).json()["entry"]
    assert len(vs) == 1
    cs = app_client.get("/fhir/CodeSystem", params={"url": "http://hl7.org/fhir/administrative-gender"}).json()["entry"]
    assert len(cs) == 1
    expanded = app_client.get("/fhir/ValueSet/$expand", params={"url": "http://hl7.org/fhir/ValueSet/administrative-gender"}).json()
    assert {c["code"] for c in expanded["expansion"]["contains"]} == {"male", "female", "other", "unknown"}
    look = app_client.get("/fhir/CodeSystem/$lookup", params={"system": "http://hl7.org/fhir/administrative-gender", "code": "female"})
    assert params(look)["display"][0]["valueString"] == "Female"
