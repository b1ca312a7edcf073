"""Reference ``:below`` / ``:above``: a reference into a ``partOf`` hierarchy (search/hierarchy.py).

SATUSEHAT registers a hospital's departments as Organizations ``partOf`` it, and Locations nest
(building, floor, room). ``Encounter?service-provider:below=Organization/rsud`` finds the
hospital's Encounters in every unit. Before, the modifier was "not supported (ignored)": a lenient
search answered every Encounter."""

from __future__ import annotations

import pytest

from tests.conftest import match_ids, put_resource

H = {"Content-Type": "application/fhir+json"}
AMB = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}


def _org(oid: str, parent: str | None = None) -> dict:
    org = {"resourceType": "Organization", "id": oid, "name": oid}
    return {**org, "partOf": {"reference": f"Organization/{parent}"}} if parent else org


def _loc(lid: str, parent: str | None = None) -> dict:
    loc = {"resourceType": "Location", "id": lid, "name": lid}
    return {**loc, "partOf": {"reference": f"Location/{parent}"}} if parent else loc


def _encounter(eid: str, org: str, loc: str | None = None) -> dict:
    e = {
        "resourceType": "Encounter",
        "id": eid,
        "status": "finished",
        "class": AMB,
        "serviceProvider": {"reference": f"Organization/{org}"},
    }
    return {**e, "location": [{"location": {"reference": f"Location/{loc}"}}]} if loc else e


def _facility(client, **headers) -> None:
    for resource in (
        _org("rsud"),
        _org("poli-anak", "rsud"),
        _org("klinik-tumbuh", "poli-anak"),
        _org("puskesmas"),
        _loc("gedung-a"),
        _loc("lantai-1", "gedung-a"),
        _loc("kamar-101", "lantai-1"),
        _loc("gedung-b"),
        _encounter("e-rsud", "rsud", "gedung-a"),
        _encounter("e-poli", "poli-anak", "kamar-101"),
        _encounter("e-klinik", "klinik-tumbuh", "lantai-1"),
        _encounter("e-pkm", "puskesmas", "gedung-b"),
    ):
        put_resource(client, resource, **headers)


@pytest.fixture
def facility(client):
    _facility(client)
    return client


def test_below_finds_the_unit_and_every_unit_under_it(facility):
    assert match_ids(facility, "/fhir/Encounter?service-provider:below=Organization/rsud") == ["e-klinik", "e-poli", "e-rsud"]
    assert match_ids(facility, "/fhir/Encounter?service-provider:below=Organization/poli-anak") == ["e-klinik", "e-poli"]
    assert match_ids(facility, "/fhir/Encounter?service-provider:below=Organization/puskesmas") == ["e-pkm"]
    assert match_ids(facility, "/fhir/Encounter?location:below=Location/gedung-a") == ["e-klinik", "e-poli", "e-rsud"]
    # the hierarchy's own parameter: what lies below
    assert match_ids(facility, "/fhir/Organization?partof:below=Organization/rsud") == ["klinik-tumbuh", "poli-anak"]
    assert match_ids(facility, "/fhir/Location?partof:below=gedung-a") == ["kamar-101", "lantai-1"]  # one target type: a bare id
    # either value
    assert match_ids(facility, "/fhir/Encounter?service-provider:below=Organization/poli-anak,Organization/puskesmas") == [
        "e-klinik",
        "e-pkm",
        "e-poli",
    ]


def test_above_finds_the_unit_and_every_unit_over_it(facility):
    assert match_ids(facility, "/fhir/Encounter?service-provider:above=Organization/klinik-tumbuh") == ["e-klinik", "e-poli", "e-rsud"]
    assert match_ids(facility, "/fhir/Encounter?location:above=Location/lantai-1") == ["e-klinik", "e-rsud"]


def test_the_hierarchy_as_it_is_now_and_a_cycle_ends(facility):
    put_resource(facility, _org("poli-anak", "puskesmas"))  # the department moves
    assert match_ids(facility, "/fhir/Encounter?service-provider:below=Organization/puskesmas") == ["e-klinik", "e-pkm", "e-poli"]
    assert match_ids(facility, "/fhir/Encounter?service-provider:below=Organization/rsud") == ["e-rsud"]
    put_resource(facility, _org("rsud", "klinik-tumbuh"))  # a cycle: rsud -> klinik -> poli -> puskesmas; then puskesmas -> rsud
    put_resource(facility, _org("puskesmas", "rsud"))
    assert match_ids(facility, "/fhir/Encounter?service-provider:below=Organization/rsud") == ["e-klinik", "e-pkm", "e-poli", "e-rsud"]


@pytest.mark.parametrize(
    "query, why",
    [
        ("subject:below=Patient/p1", "has no hierarchy"),
        ("service-provider:below=Location/gedung-a", "not Location"),
        ("service-provider:below=https://elsewhere.example/fhir/Organization/x", "not a reference Type/id"),
    ],
)
def test_what_has_no_hierarchy_is_400(facility, query, why):
    for headers in ({}, {"Prefer": "handling=strict"}):
        r = facility.get(f"/fhir/Encounter?{query}", headers=headers)
        assert r.status_code == 400, r.text
        assert why in r.json()["issue"][0]["diagnostics"]


def test_token_mode_needs_search_of_the_hierarchy(secured):
    from tests.security.test_token_auth_http import auth, token_for

    _facility(secured, **auth(token_for(secured, "system/*.*")))
    encounters = auth(token_for(secured, "system/Encounter.read"))
    refused = secured.get("/fhir/Encounter?service-provider:below=Organization/rsud", headers=encounters)
    assert refused.status_code == 403 and "Organization" in refused.json()["issue"][0]["diagnostics"]
    both = auth(token_for(secured, "system/Encounter.read system/Organization.read"))
    assert match_ids(secured, "/fhir/Encounter?service-provider:below=Organization/rsud", **both) == ["e-klinik", "e-poli", "e-rsud"]
