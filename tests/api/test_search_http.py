"""Search over HTTP: searchset Bundles, links, GET and POST _search, system _type, strictness."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from tests.api.test_rest_crud import PATIENT, post, put
from tests.bundles import entries

NIK = "https://fhir.kemkes.go.id/id/nik"


def _seed(client):
    a = post(client, PATIENT).json()["id"]
    b = post(
        client,
        {
            **PATIENT,
            "identifier": [{"system": NIK, "value": "3171010101800001"}],
            "name": [{"family": "Santoso", "given": ["Budi"]}],
            "gender": "male",
            "birthDate": "1980-01-01",
        },
    ).json()["id"]
    e = post(
        client,
        {
            "resourceType": "Encounter",
            "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": f"Patient/{a}"},
        },
        "Encounter",
    ).json()["id"]
    return a, b, e


def test_search_by_nik_returns_a_searchset(client):
    a, _, _ = _seed(client)
    r = client.get("/fhir/Patient", params={"identifier": f"{NIK}|3204154506900003"})
    assert r.status_code == 200
    bundle = r.json()
    assert bundle["type"] == "searchset"
    assert [e["resource"]["id"] for e in bundle["entry"]] == [a]
    assert bundle["entry"][0]["fullUrl"] == f"http://testserver/fhir/Patient/{a}"
    assert bundle["entry"][0]["search"]["mode"] == "match"
    assert bundle["link"][0]["relation"] == "self"


def test_search_reflects_updates_and_deletes(client):
    a, b, _ = _seed(client)
    put(client, "Patient", a, {**PATIENT, "id": a, "name": [{"family": "Rahayu"}]})
    assert [e["resource"]["id"] for e in entries(client.get("/fhir/Patient?family=rahayu").json())] == [a]
    assert entries(client.get("/fhir/Patient?family=aminah").json()) == []
    client.delete(f"/fhir/Patient/{b}")
    assert entries(client.get("/fhir/Patient?gender=male").json()) == []


def test_post_search_with_form_body(client):
    a, _, _ = _seed(client)
    r = client.post("/fhir/Patient/_search", content=b"family=Aminah", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200
    assert [e["resource"]["id"] for e in r.json()["entry"]] == [a]


def test_encounter_by_patient_with_include(client):
    a, _, e = _seed(client)
    r = client.get("/fhir/Encounter", params={"patient": a, "_include": "Encounter:subject"})
    entries = r.json()["entry"]
    assert [(x["resource"]["id"], x["search"]["mode"]) for x in entries] == [(e, "match"), (a, "include")]


def test_system_search_with_type(client):
    _seed(client)
    r = client.get("/fhir", params={"_type": "Encounter"})
    assert r.status_code == 200
    assert {x["resource"]["resourceType"] for x in r.json()["entry"]} == {"Encounter"}


def test_unknown_parameter_is_reported_or_rejected_when_strict(client):
    _seed(client)
    lenient = client.get("/fhir/Patient", params={"foo": "bar"})
    assert lenient.status_code == 200
    outcome = [x for x in lenient.json()["entry"] if x["search"]["mode"] == "outcome"]
    assert outcome and outcome[0]["resource"]["resourceType"] == "OperationOutcome"
    assert "foo" not in lenient.json()["link"][0]["url"]
    strict = client.get("/fhir/Patient", params={"foo": "bar"}, headers={"Prefer": "handling=strict"})
    assert strict.status_code == 400
    assert strict.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize(("sort", "used"), [("foo", None), ("foo,-birthdate", "-birthdate"), ("-birthdate,,foo,_id", "-birthdate,_id")])
def test_an_ignored_sort_key_is_not_in_the_self_link(client, sort, used):
    """search.html#errors: the self link holds the parameters the server used. A _sort key it
    could not use was reported and ignored, yet stayed in the self link."""
    _seed(client)
    r = client.get("/fhir/Patient", params={"_sort": sort})
    assert r.status_code == 200, r.text
    outcome = [x["resource"] for x in r.json()["entry"] if x["search"]["mode"] == "outcome"]
    assert "cannot sort by 'foo'" in outcome[0]["issue"][0]["diagnostics"]
    query = parse_qs(urlsplit(r.json()["link"][0]["url"]).query)
    assert query.get("_sort") == (None if used is None else [used])


def test_malformed_value_is_400(client):
    r = client.get("/fhir/Patient", params={"birthdate": "xx2020"})
    assert r.status_code == 400
    assert r.json()["resourceType"] == "OperationOutcome"


def test_capability_lists_search_params_with_definitions(client):
    rest = client.get("/fhir/metadata").json()["rest"][0]
    patient = next(r for r in rest["resource"] if r["type"] == "Patient")
    assert {"code": "search-type"} in patient["interaction"]
    by_name = {p["name"]: p for p in patient["searchParam"]}
    assert by_name["identifier"]["definition"] == "http://hl7.org/fhir/SearchParameter/Patient-identifier"
    assert by_name["birthdate"]["type"] == "date"
    assert "Encounter:subject" in next(r for r in rest["resource"] if r["type"] == "Encounter")["searchInclude"]


def test_satusehat_address_administrative_code_search_and_its_definition(app_client):
    from fhir_server.service.seed import seed_conformance

    seed_conformance(app_client.app.state.fhir.resources)
    sp = app_client.get("/fhir/SearchParameter/address-administrative-code")
    assert sp.status_code == 200 and sp.json()["url"] == "https://fhir-server.id/SearchParameter/address-administrative-code"
    patient = {
        "resourceType": "Patient",
        "address": [
            {
                "extension": [
                    {
                        "url": "https://fhir.kemkes.go.id/r4/StructureDefinition/administrativeCode",
                        "extension": [{"url": "province", "valueCode": "32"}, {"url": "city", "valueCode": "3204"}],
                    }
                ]
            }
        ],
    }
    pid = app_client.post("/fhir/Patient", json=patient).json()["id"]
    found = app_client.get("/fhir/Patient", params={"address-administrative-code": "city|3204", "_id": pid}).json()["entry"]
    assert [e["resource"]["id"] for e in found] == [pid]


def test_searches_the_fast_path_hands_to_the_route(client):
    """XML, _pretty, _format, unknown types and bad values are answered by the route, as before."""
    a, _, _ = _seed(client)
    query = {"identifier": f"{NIK}|3204154506900003"}
    xml = client.get("/fhir/Patient", params=query, headers={"Accept": "application/fhir+xml"})
    assert xml.status_code == 200 and xml.headers["content-type"].startswith("application/fhir+xml")
    assert f'<id value="{a}"/>' in xml.text
    assert client.get("/fhir/Patient", params={**query, "_format": "xml"}).text.startswith("<")
    pretty = client.get("/fhir/Patient", params={**query, "_pretty": "true"})
    assert pretty.status_code == 200 and "\n  " in pretty.text
    plain = client.get("/fhir/Patient", params=query)
    assert "\n" not in plain.text and plain.headers["content-type"] == "application/fhir+json; charset=utf-8"
    assert client.get("/fhir/Patient", params=query, headers={"Accept": "text/plain"}).status_code == 406
    unknown = client.get("/fhir/Nonsense", params=query)
    assert unknown.status_code == 404 and unknown.json()["resourceType"] == "OperationOutcome"
    bad = client.get("/fhir/Patient", params={"birthdate": "gt1980-13"})
    assert bad.status_code == 400 and bad.json()["resourceType"] == "OperationOutcome"
