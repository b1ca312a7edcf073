"""The in-memory matcher (``subscriptions/rowmatch.py``) reaches the search engine's verdict: for
every filter it accepts and every stored resource, "does the filter select this resource" is
answered the same by ``Index.matching`` on the resource's body and by a real search
(``GET [type]?[filter]&_id=[id]``), on SQLite and PostgreSQL. Filters it cannot judge exactly
(chains, dates, other modifiers) are left to the search engine."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import pytest
from fastapi.testclient import TestClient

from fhir_server.subscriptions import rowmatch

BASE = "http://testserver/fhir"
JSON = {"Content-Type": "application/fhir+json"}
NIK = "https://fhir.kemkes.go.id/id/nik"

RESOURCES: list[dict[str, Any]] = [
    {"resourceType": "Patient", "id": "p1", "name": [{"family": "Santoso", "given": ["Budi", "Agus"]}], "gender": "male",
     "identifier": [{"system": NIK, "value": "3174000000000001"}], "active": True},
    {"resourceType": "Patient", "id": "p2", "name": [{"family": "Sántoso  Wijaya"}], "gender": "female",
     "identifier": [{"value": "no-system"}]},
    {"resourceType": "Patient", "id": "p3", "name": [{"text": "Siti Nurhaliza"}], "gender": "female", "active": False,
     "generalPractitioner": [{"reference": "Practitioner/dr1"}], "managingOrganization": {"reference": f"{BASE}/Organization/o1"}},
    {"resourceType": "Patient", "id": "p4"},
    {"resourceType": "Encounter", "id": "e1", "status": "in-progress",
     "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}, "subject": {"reference": "Patient/p1"}},
    {"resourceType": "Encounter", "id": "e2", "status": "finished", "class": {"code": "IMP"},
     "subject": {"reference": "Patient/p2/_history/1"}, "serviceProvider": {"reference": "Organization/o1"}},
    {"resourceType": "Encounter", "id": "e3", "status": "finished", "class": {"code": "AMB"},
     "subject": {"reference": f"{BASE}/Patient/p3"}},
    {"resourceType": "Encounter", "id": "e4", "status": "planned", "class": {"code": "AMB"},
     "subject": {"reference": "https://elsewhere.example/fhir/Patient/p1"}},
    {"resourceType": "Observation", "id": "o1", "status": "final", "subject": {"reference": "Patient/p1"},
     "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}, {"system": "http://snomed.info/sct", "code": "364075005"}]}},
    {"resourceType": "Observation", "id": "o2", "status": "preliminary", "subject": {"reference": "Patient/p2"},
     "code": {"coding": [{"code": "8867-4"}]}},
]  # fmt: skip

#: filters judged in memory (asserted), by type
IN_MEMORY = {
    "Patient": [
        "family=santoso", "family=SANTO", "family=Santoso", "family=sant", "family=wijaya", "family=santoso wijaya",
        "family:exact=Santoso", "family:exact=santoso", "family:exact=Sántoso  Wijaya", "name=siti", "name=agus",
        "given=budi,siti", "family=santoso&given=budi", "family=santoso&given=agus&gender=female",
        "gender=female", "gender=male,female", "gender:not=female", "gender=http://hl7.org/fhir/administrative-gender|female",
        "gender=|female", f"identifier={NIK}|3174000000000001", f"identifier={NIK}|", "identifier=|no-system",
        "identifier=3174000000000001", "identifier=no-system", "identifier:missing=true", "identifier:missing=false",
        "active=true", "active=false", "active:not=true", "family:missing=true",
        "general-practitioner=Practitioner/dr1", "general-practitioner=dr1", "general-practitioner:Practitioner=dr1",
        "general-practitioner:Organization=dr1", "organization=Organization/o1", f"organization={BASE}/Organization/o1",
        "_id=p1,p3", "_id:not=p1", "_id=p2&gender=female",
    ],
    "Encounter": [
        "patient=Patient/p1", "patient=p1", "subject=Patient/p2", "patient=Patient/p2/_history/1", "patient=Patient/p2/_history/2",
        f"patient={BASE}/Patient/p3", "patient=Patient/p3", "subject:Patient=p3", "subject:Group=p3", "status=finished",
        "status=finished,planned", "status:not=finished", "class=AMB", "class=http://terminology.hl7.org/CodeSystem/v3-ActCode|AMB",
        "class=|IMP", "service-provider:missing=true", "status=finished&patient=Patient/p2",
    ],
    "Observation": [
        "code=8867-4", "code=http://loinc.org|8867-4", "code=http://snomed.info/sct|", "code=|8867-4",
        "code=http://loinc.org|8867-4&patient=Patient/p1", "status=final,preliminary&subject=Patient/p2",
    ],
}  # fmt: skip

#: filters left to the search engine
BY_SEARCH = [
    ("Encounter", "patient.family=santoso"),
    ("Encounter", "patient=https://elsewhere.example/fhir/Patient/p1"),
    ("Patient", "birthdate=ge2000"),
    ("Patient", "family:contains=ant"),
    ("Patient", "identifier:of-type=http://x|MR|1"),
    ("Patient", "_has:Encounter:patient:status=finished"),
    ("Patient", "_lastUpdated=gt2000"),
    ("Observation", "code:text=heart"),
    ("Patient", "unknown-parameter=1"),
]


@pytest.fixture
def stored(client: TestClient) -> TestClient:
    for r in RESOURCES:
        assert client.put(f"/fhir/{r['resourceType']}/{r['id']}", json=r, headers=JSON).status_code in (200, 201)
    return client


def _searched(client: TestClient, res_type: str, query: str, res_id: str) -> bool:
    params = [*parse_qsl(query, keep_blank_values=True), ("_id", res_id)]
    r = client.get(f"/fhir/{res_type}", params=params)
    assert r.status_code == 200, r.text
    return any(e["resource"]["id"] == res_id for e in r.json().get("entry", []) if e.get("search", {}).get("mode") == "match")


def test_in_memory_verdicts_are_the_search_engines(stored: TestClient) -> None:
    checked = 0
    for res_type, queries in IN_MEMORY.items():
        index = rowmatch.Index()
        filters = {}
        for query in queries:
            f = rowmatch.compile_filter(res_type, parse_qsl(query, keep_blank_values=True), BASE)
            assert f is not None, f"{res_type}?{query} should be judged in memory"
            filters[query] = f
            index.add(f)
        for resource in (r for r in RESOURCES if r["resourceType"] == res_type):
            body = stored.get(f"/fhir/{res_type}/{resource['id']}").json()  # as stored: meta, id
            selected = {f.key for f in index.matching(resource["id"], body)}
            for query, f in filters.items():
                expected = _searched(stored, res_type, query, resource["id"])
                assert (f.key in selected) == expected, f"{res_type}/{resource['id']} vs {query}: search says {expected}"
                checked += expected
    assert checked > 40  # the filters do select things, not only reject


def test_filters_the_search_engine_must_judge_are_left_to_it() -> None:
    for res_type, query in BY_SEARCH:
        assert rowmatch.compile_filter(res_type, parse_qsl(query), BASE) is None, query


def test_identical_filters_are_filed_once_and_a_change_meets_only_its_candidates() -> None:
    index = rowmatch.Index()
    for n in range(1000):
        f = rowmatch.compile_filter("Patient", [("family", f"Sub{n}")], BASE)
        assert f is not None
        index.add(f)
        index.add(f)  # a second subscription with the same filter
    assert sum(len(v) for v in index.by_key.values()) == 1000 and not index.scan
    hit = index.matching("x", {"resourceType": "Patient", "name": [{"family": "Sub7"}]})
    assert [f.key for f in hit] == [("Patient", (("family", "Sub7"),))]  # a prefix of Sub70..79 only when those are the value
    assert index.matching("y", {"resourceType": "Patient", "name": [{"family": "Other"}]}) == []
