"""Chains, reverse chains (_has), _include / _revinclude (with :iterate and *)."""

from __future__ import annotations

import pytest
from searchutil import idset, search

NIK = "https://fhir.kemkes.go.id/id/nik"


@pytest.fixture
def graph(store):
    store.put({"resourceType": "Organization", "id": "rs1", "name": "RS Harapan"})
    store.put({"resourceType": "Organization", "id": "rs2", "name": "Puskesmas Sehat"})
    store.put(
        {
            "resourceType": "Patient",
            "id": "p1",
            "identifier": [{"system": NIK, "value": "111"}],
            "name": [{"family": "Wijaya"}],
            "managingOrganization": {"reference": "Organization/rs1"},
        }
    )
    store.put(
        {
            "resourceType": "Patient",
            "id": "p2",
            "identifier": [{"system": NIK, "value": "222"}],
            "name": [{"family": "Siregar"}],
            "managingOrganization": {"reference": "Organization/rs2"},
            "link": [{"other": {"reference": "Patient/p1"}, "type": "seealso"}],
        }
    )
    enc = {"resourceType": "Encounter", "class": {"code": "AMB"}}
    store.put(
        {
            **enc,
            "id": "e1",
            "status": "finished",
            "subject": {"reference": "Patient/p1"},
            "serviceProvider": {"reference": "Organization/rs1"},
        }
    )
    store.put({**enc, "id": "e2", "status": "in-progress", "subject": {"reference": "Patient/p2"}})
    store.put({**enc, "id": "e3", "status": "finished", "subject": {"reference": "Patient/p2"}, "partOf": {"reference": "Encounter/e2"}})
    store.put(
        {
            "resourceType": "Observation",
            "id": "o1",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": "Patient/p1"},
            "encounter": {"reference": "Encounter/e1"},
        }
    )
    store.put(
        {
            "resourceType": "Coverage",
            "id": "c1",
            "status": "active",
            "beneficiary": {"reference": "Patient/p2"},
            "payor": [{"reference": "Organization/rs2"}],
        }
    )
    return store


def test_chain_by_identifier(graph):
    assert idset(graph, "Encounter", f"subject:Patient.identifier={NIK}|222") == {"e2", "e3"}


def test_chain_on_patient_parameter(graph):
    assert idset(graph, "Encounter", "patient.family=wija") == {"e1"}


def test_chain_of_depth_two(graph):
    assert idset(graph, "Encounter", "patient.organization.name=puskesmas") == {"e2", "e3"}
    assert idset(graph, "Observation", "encounter.patient.organization.name=rs") == {"o1"}


def test_chain_with_other_criteria_is_anded(graph):
    assert idset(graph, "Encounter", "patient.family=siregar&status=finished") == {"e3"}


def test_has(graph):
    assert idset(graph, "Patient", "_has:Encounter:patient:status=in-progress") == {"p2"}
    assert idset(graph, "Patient", "_has:Observation:patient:code=http://loinc.org|8867-4") == {"p1"}


def test_nested_has(graph):
    q = "_has:Encounter:patient:_has:Observation:encounter:code=8867-4"
    assert idset(graph, "Patient", q) == {"p1"}


def test_has_combined_with_chain(graph):
    assert idset(graph, "Organization", "_has:Patient:organization:_has:Coverage:beneficiary:status=active") == {"rs2"}


def _entries(res):
    return {(t, i) for t, i, _ in res.includes}


def test_include(graph):
    res = search(graph, "Encounter", "_id=e1&_include=Encounter:subject")
    assert [i for _, i, _ in res.matches] == ["e1"]
    assert _entries(res) == {("Patient", "p1")}


def test_include_with_target_type(graph):
    assert _entries(search(graph, "Encounter", "_id=e1&_include=Encounter:subject:Group")) == set()


def test_include_star(graph):
    res = search(graph, "Encounter", "_id=e1&_include=*")
    assert _entries(res) == {("Patient", "p1"), ("Organization", "rs1")}


def test_include_does_not_repeat_matches(graph):
    res = search(graph, "Encounter", "_id=e2,e3&_include=Encounter:part-of")
    assert _entries(res) == set()  # e2 is already a match


def test_revinclude(graph):
    res = search(graph, "Patient", "_id=p2&_revinclude=Encounter:subject&_revinclude=Coverage:beneficiary")
    assert _entries(res) == {("Encounter", "e2"), ("Encounter", "e3"), ("Coverage", "c1")}


def test_include_iterate(graph):
    q = "_id=o1&_include=Observation:encounter&_include:iterate=Encounter:subject&_include:iterate=Patient:organization"
    assert _entries(search(graph, "Observation", q)) == {("Encounter", "e1"), ("Patient", "p1"), ("Organization", "rs1")}


def test_include_without_iterate_does_not_follow_included(graph):
    q = "_id=o1&_include=Observation:encounter&_include=Encounter:subject"
    assert _entries(search(graph, "Observation", q)) == {("Encounter", "e1")}


def test_revinclude_iterate(graph):
    q = "_id=rs2&_revinclude=Patient:organization&_revinclude:iterate=Encounter:subject"
    assert _entries(search(graph, "Organization", q)) == {("Patient", "p2"), ("Encounter", "e2"), ("Encounter", "e3")}


def test_revinclude_star(graph):
    res = search(graph, "Patient", "_id=p1&_revinclude=*")
    assert _entries(res) == {("Encounter", "e1"), ("Observation", "o1"), ("Patient", "p2")}


def test_deleted_targets_are_not_included(graph):
    graph.delete("Patient", "p1")
    assert _entries(search(graph, "Encounter", "_id=e1&_include=Encounter:subject")) == set()
    assert idset(graph, "Encounter", "patient.family=wija") == set()
