"""Bulk Data 2.0 ``_typeFilter`` and ``_elements``, written from the IG (export.html, "Query
Parameters"; before this they were refused with 400, or ignored with ``handling=lenient``):

* ``_typeFilter``: FHIR REST search queries ``[type]?[parameters]``, comma-separated or repeated,
  percent-encoded; a type with queries exports only its resources matching any of them (OR), other
  types are not filtered;
* ``_elements``: ``[type].[element]`` or ``[element]`` (top-level elements); the server omits the
  unlisted non-mandatory elements and marks the resources SUBSETTED in ``meta.tag``.
"""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from fhir_server.operations.registry import definition
from tests.bulk.conftest import ASYNC
from tests.bulk.test_export import _create, _export, _files, _kickoff, _observation, _patient
from tests.bulk.test_export_parameters import LENIENT, _error_file, _post_export

LOINC = "http://loinc.org"
SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}


def _by_type(files: dict[str, list[bytes]]) -> dict[str, list[dict]]:
    return {t: [json.loads(line) for line in lines] for t, lines in files.items()}


@pytest.fixture
def data(bulk):
    """Two Patients, each with a heart-rate (8867-4) and a body-weight (29463-7) Observation."""
    satu, dua = _patient(bulk, "Satu"), _patient(bulk, "Dua")
    obs = {pid: {code: _observation(bulk, pid, code) for code in ("8867-4", "29463-7")} for pid in (satu, dua)}
    return satu, dua, obs


def _obs_ids(files: dict[str, list[bytes]]) -> set[str]:
    return {o["id"] for o in _by_type(files).get("Observation", [])}


def test_system_type_filter_keeps_the_matches_of_the_filtered_type_only(bulk, worker, data):
    satu, dua, obs = data
    manifest = _export(bulk, "/fhir/$export", params={"_type": "Patient,Observation", "_typeFilter": f"Observation?code={LOINC}|8867-4"})
    files = _files(bulk, manifest)
    assert _obs_ids(files) == {obs[satu]["8867-4"], obs[dua]["8867-4"]}
    assert {p["id"] for p in _by_type(files)["Patient"]} == {satu, dua}  # no filter on Patient


def test_queries_of_one_type_are_or_ed_comma_separated_percent_encoded_or_repeated(bulk, worker, data):
    satu, dua, obs = data
    heart, weight = quote(f"Observation?code={LOINC}|8867-4", safe=""), quote(f"Observation?subject=Patient/{dua}", safe="")
    as_list = _export(bulk, "/fhir/$export", params={"_type": "Observation", "_typeFilter": f"{heart},{weight}"})
    repeated = _export(bulk, "/fhir/$export", params=[("_type", "Observation"), ("_typeFilter", heart), ("_typeFilter", weight)])
    wanted = {obs[satu]["8867-4"], obs[dua]["8867-4"], obs[dua]["29463-7"]}
    assert _obs_ids(_files(bulk, as_list)) == wanted
    assert _obs_ids(_files(bulk, repeated)) == wanted
    # a comma inside a query is the query's own OR, not the next query
    both_codes = _export(
        bulk, "/fhir/$export", params={"_type": "Observation,Patient", "_typeFilter": "Observation?code=8867-4,29463-7,Patient?name=Satu"}
    )
    files = _files(bulk, both_codes)
    assert len(_obs_ids(files)) == 4 and [p["id"] for p in _by_type(files)["Patient"]] == [satu]


def test_a_type_filter_in_a_stored_value_set(bulk, worker, data):
    """``:in`` a ValueSet a client stored: the export's worker looks it up as a search does."""
    satu, dua, obs = data
    _create(
        bulk,
        {
            "resourceType": "ValueSet",
            "url": "https://rs.example.id/fhir/ValueSet/nadi",
            "status": "active",
            "compose": {"include": [{"system": LOINC, "concept": [{"code": "8867-4"}]}]},
        },
    )
    query = "Observation?code:in=https://rs.example.id/fhir/ValueSet/nadi"
    manifest = _export(bulk, "/fhir/$export", params={"_type": "Observation", "_typeFilter": query})
    assert _obs_ids(_files(bulk, manifest)) == {obs[satu]["8867-4"], obs[dua]["8867-4"]}


def test_a_chain_in_a_type_filter(bulk, worker, data):
    satu, _, obs = data
    manifest = _export(bulk, "/fhir/$export", params={"_type": "Observation", "_typeFilter": "Observation?subject:Patient.name=Satu"})
    assert _obs_ids(_files(bulk, manifest)) == set(obs[satu].values())


@pytest.mark.parametrize("level", ["patient", "group"])
def test_patient_and_group_exports_apply_the_filters(bulk, worker, data, level):
    satu, dua, obs = data
    path = "/fhir/Patient/$export"
    if level == "group":
        group = {"resourceType": "Group", "type": "person", "actual": True, "member": [{"entity": {"reference": f"Patient/{satu}"}}]}
        path = f"/fhir/Group/{_create(bulk, group)}/$export"
    filters = f"Observation?code={LOINC}|29463-7,Patient?name=Satu"
    files = _files(bulk, _export(bulk, path, params={"_typeFilter": filters}))
    assert {p["id"] for p in _by_type(files)["Patient"]} == {satu}
    assert _obs_ids(files) == ({obs[satu]["29463-7"], obs[dua]["29463-7"]} if level == "patient" else {obs[satu]["29463-7"]})


def test_a_post_kickoff_takes_type_filter_and_elements_as_value_strings(bulk, worker, data):
    satu, _, obs = data
    manifest = _post_export(
        bulk,
        "/fhir/Patient/$export",
        [
            {"name": "_typeFilter", "valueString": f"Observation?subject=Patient/{satu}&code=8867-4"},
            {"name": "_type", "valueString": "Observation"},
            {"name": "_elements", "valueString": "Observation.status"},
        ],
    )
    found = _by_type(_files(bulk, manifest))["Observation"]
    assert [o["id"] for o in found] == [obs[satu]["8867-4"]]
    assert set(found[0]) == {"resourceType", "id", "meta", "status", "code"}  # code is mandatory (1..1)


def test_elements_subset_the_named_types_and_tag_them(bulk, worker, data):
    manifest = _export(bulk, "/fhir/$export", params={"_type": "Patient,Observation", "_elements": "Patient.gender,Patient.name"})
    files = _by_type(_files(bulk, manifest))
    for patient in files["Patient"]:
        assert set(patient) == {"resourceType", "id", "meta", "name"}
        assert SUBSETTED in patient["meta"]["tag"]
    for observation in files["Observation"]:  # a type the list does not name: whole, not tagged
        assert "subject" in observation and SUBSETTED not in observation["meta"].get("tag", [])
    untyped = _by_type(_files(bulk, _export(bulk, "/fhir/$export", params={"_type": "Patient,Observation", "_elements": "subject"})))
    assert all(set(o) == {"resourceType", "id", "meta", "status", "code", "subject"} for o in untyped["Observation"])
    assert all(set(p) == {"resourceType", "id", "meta"} and SUBSETTED in p["meta"]["tag"] for p in untyped["Patient"])


@pytest.mark.parametrize(
    "value",
    [
        "Observation?nonsense=1",  # an unknown parameter would widen the export if ignored
        "Observation?code=8867-4&_count=1",  # result parameters do not select
        "Observation?_sort=date",
        "Observation?date=yesterday",
        "Observation",
        "Nope?x=1",
    ],
)
def test_a_bad_type_filter_is_400_lenient_or_not(bulk, value):
    for headers in (ASYNC, LENIENT):
        resp = _kickoff(bulk, "/fhir/$export", params={"_typeFilter": value}, headers=headers)
        assert resp.status_code == 400, (value, resp.text)
        assert resp.json()["resourceType"] == "OperationOutcome" and "_typeFilter" in resp.text


def test_a_filter_of_a_type_not_exported_is_400_or_reported_when_lenient(bulk, worker, data):
    params = {"_type": "Patient", "_typeFilter": "Observation?status=final"}
    assert _kickoff(bulk, "/fhir/$export", params=params).status_code == 400
    resp = _kickoff(bulk, "/fhir/$export", params=params, headers=LENIENT)
    assert resp.status_code == 202
    manifest = _export(bulk, "/fhir/$export", params=params, headers=LENIENT)
    texts = [o["issue"][0]["diagnostics"] for o in _error_file(bulk, manifest)]
    assert len(texts) == 1 and "Observation?status=final" in texts[0]
    assert _kickoff(bulk, "/fhir/Patient/$export", params={"_typeFilter": "Organization?name=x"}).status_code == 400


@pytest.mark.parametrize("value", ["Patient.name.given", "name[0]", "Nope.name", "Organization.name"])
def test_bad_elements_are_400(bulk, value):
    assert _kickoff(bulk, "/fhir/Patient/$export", params={"_elements": value}).status_code == 400


def test_the_definitions_declare_both_parameters():
    """The served OperationDefinitions (seeded from these files) list what is supported."""
    for stem in ("export", "patient-export", "group-export"):
        names = [p["name"] for p in definition(stem)["parameter"]]
        assert "_typeFilter" in names and "_elements" in names, stem
        assert "_typeFilter" not in definition(stem)["description"]  # no longer named as refused
