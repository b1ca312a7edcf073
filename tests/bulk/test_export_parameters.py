"""Bulk Data 2.0 kick-off parameters beyond _type/_since/_outputFormat, written from the IG
(hl7.org/fhir/uv/bulkdata/STU2/export.html, "Query Parameters" and the manifest's ``error``):

* the CapabilityStatement names the IG and the Patient- and Group-level definitions;
* ``patient`` (POST only, Patient and Group level): only those patients' compartments; patients
  that are not on the server, or not in the Group, are an error response with an OperationOutcome;
* ``includeAssociatedData``: Latest/RelevantProvenanceResources; values the server does not
  support are an error, or with ``Prefer: handling=lenient`` ignored and reported;
* ``_since`` later than the kick-off can select nothing: 400;
* with ``Prefer: handling=lenient`` every ignored parameter is an OperationOutcome in an NDJSON
  file of the manifest's ``error`` array.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from fhir_server.timeutil import now_us, to_instant
from tests.bulk.conftest import ASYNC, BASE, wait_done
from tests.bulk.test_export import _create, _export, _files, _kickoff, _observation, _patient

LENIENT = {"Prefer": "respond-async, handling=lenient"}


def _ids(files: dict[str, list[bytes]]) -> dict[str, set[str]]:
    return {t: {json.loads(line)["id"] for line in lines} for t, lines in files.items()}


def _post(client, path: str, parameters: list[dict], headers: dict | None = None):
    body = {"resourceType": "Parameters", "parameter": parameters}
    return client.post(path, json=body, headers={**ASYNC, **(headers or {})})


def _post_export(client, path: str, parameters: list[dict], headers: dict | None = None) -> dict:
    resp = _post(client, path, parameters, headers)
    assert resp.status_code == 202, resp.text
    done = wait_done(client, resp.headers["Content-Location"])
    assert done.status_code == 200, done.text
    return done.json()


def _patient_ref(pid: str) -> dict:
    return {"name": "patient", "valueReference": {"reference": f"Patient/{pid}"}}


def _provenance(client, target: str, recorded: str) -> str:
    return _create(
        client,
        {
            "resourceType": "Provenance",
            "target": [{"reference": target}],
            "recorded": recorded,
            "agent": [{"who": {"reference": "Organization/rs-1"}}],
        },
    )


def _outcome(resp, status: int) -> list[dict]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["resourceType"] == "OperationOutcome"
    return body["issue"]


# -- a. the CapabilityStatement and the definitions ------------------------------------------


def test_capability_statement_names_the_ig_and_the_level_specific_definitions(bulk):
    cap = bulk.get("/fhir/metadata").json()
    assert "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data" in cap["instantiates"]
    rest = cap["rest"][0]
    system = [o["definition"] for o in rest["operation"] if o["name"] == "export"]
    assert system == ["http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"]
    by_type = {r["type"]: r for r in rest["resource"]}
    patient = [o["definition"] for o in by_type["Patient"]["operation"] if o["name"] == "export"]
    group = [o["definition"] for o in by_type["Group"]["operation"] if o["name"] == "export"]
    assert patient == ["http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export"]
    assert group == ["http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"]
    # no other resource type claims an export
    assert [r["type"] for r in rest["resource"] if any(o["name"] == "export" for o in r.get("operation", []))] == ["Group", "Patient"]


@pytest.mark.parametrize(
    ("stem", "level", "resource", "extra"),
    [
        ("export", ("system",), None, set()),
        ("patient-export", ("type",), ["Patient"], {"patient"}),
        ("group-export", ("instance",), ["Group"], {"patient"}),
    ],
)
def test_the_server_serves_each_definition_with_the_parameters_it_supports(bulk, stem, level, resource, extra):
    from fhir_server.model.validate import validate_resource
    from fhir_server.service.seed import seed_conformance

    seed_conformance(bulk.app.state.fhir.resources)  # as at start-up (the fixture empties the database)
    resp = bulk.get(f"/fhir/OperationDefinition/{stem}")
    assert resp.status_code == 200, resp.text
    definition = resp.json()
    assert definition["url"] == f"http://hl7.org/fhir/uv/bulkdata/OperationDefinition/{stem}"
    assert definition["code"] == "export"
    assert {k for k in ("system", "type", "instance") if definition[k]} == set(level)
    assert definition.get("resource") == resource
    names = {p["name"] for p in definition["parameter"]}
    assert names == {"_outputFormat", "_since", "_type", "_typeFilter", "_elements", "includeAssociatedData"} | extra
    assert [i for i in validate_resource(definition) if i.severity in ("error", "fatal")] == []


# -- b. the patient parameter ---------------------------------------------------------------


def test_patient_parameter_limits_a_patient_level_export_to_those_compartments(bulk, worker):
    p1, p2, p3 = (_patient(bulk, n) for n in ("Satu", "Dua", "Tiga"))
    obs = {pid: _observation(bulk, pid) for pid in (p1, p2, p3)}
    # relative and absolute (this server's base) references are the same patient
    manifest = _post_export(
        bulk,
        "/fhir/Patient/$export",
        [_patient_ref(p1), {"name": "patient", "valueReference": {"reference": f"{BASE}/Patient/{p3}"}}],
    )
    assert manifest["request"] == f"{BASE}/Patient/$export"  # a POST's parameters are not in the URL
    assert _ids(_files(bulk, manifest)) == {"Patient": {p1, p3}, "Observation": {obs[p1], obs[p3]}}

    # with _type as well
    manifest = _post_export(bulk, "/fhir/Patient/$export", [_patient_ref(p2), {"name": "_type", "valueString": "Observation"}])
    assert _ids(_files(bulk, manifest)) == {"Observation": {obs[p2]}}


def test_patient_parameter_on_a_group_export_keeps_members_only(bulk, worker):
    p1, p2, p3 = (_patient(bulk, n) for n in ("A", "B", "C"))
    obs = {pid: _observation(bulk, pid) for pid in (p1, p2, p3)}
    members = [{"entity": {"reference": f"Patient/{p}"}} for p in (p1, p2)]
    group = _create(bulk, {"resourceType": "Group", "type": "person", "actual": True, "member": members})

    manifest = _post_export(bulk, f"/fhir/Group/{group}/$export", [_patient_ref(p2)])
    # the Group itself is in its members' compartments (Group.member)
    assert _ids(_files(bulk, manifest)) == {"Patient": {p2}, "Observation": {obs[p2]}, "Group": {group}}

    # a patient that is on the server but not in the Group: an error response naming it
    issues = _outcome(_post(bulk, f"/fhir/Group/{group}/$export", [_patient_ref(p2), _patient_ref(p3)]), 400)
    assert len(issues) == 1 and f"Patient/{p3}" in issues[0]["diagnostics"] and f"Group/{group}" in issues[0]["diagnostics"]


def test_unknown_or_deleted_patients_are_an_error_naming_each(bulk, worker):
    p1, gone = _patient(bulk, "Ada"), _patient(bulk, "Hapus")
    assert bulk.delete(f"/fhir/Patient/{gone}").status_code in (200, 204)
    resp = _post(bulk, "/fhir/Patient/$export", [_patient_ref(p1), _patient_ref("nobody-here"), _patient_ref(gone)])
    issues = _outcome(resp, 400)
    assert sorted(i["code"] for i in issues) == ["not-found", "not-found"]
    text = " ".join(i["diagnostics"] for i in issues)
    assert "Patient/nobody-here" in text and f"Patient/{gone}" in text and f"Patient/{p1}" not in text
    # lenient does not turn a wrong patient into a silent partial export
    assert _post(bulk, "/fhir/Patient/$export", [_patient_ref("nobody-here")], LENIENT).status_code == 400


@pytest.mark.parametrize(
    "value",
    [
        {"valueString": "Patient/x"},  # not a Reference
        {"valueReference": {"reference": "Observation/x"}},  # not a Patient
        {"valueReference": {"identifier": {"system": "https://fhir.kemkes.go.id/id/nik", "value": "1"}}},  # no literal reference
        {"valueReference": {"reference": "http://elsewhere.example/fhir/Patient/x"}},  # another server's patient
    ],
)
def test_a_patient_value_that_names_no_patient_of_this_server_is_400(bulk, value):
    issues = _outcome(_post(bulk, "/fhir/Patient/$export", [{"name": "patient", **value}]), 400)
    assert "patient" in issues[0]["diagnostics"]


def test_patient_parameter_is_for_post_at_patient_and_group_level_only(bulk, worker):
    pid = _patient(bulk, "Get")
    # GET: the IG defines it for POST kick-offs only
    issues = _outcome(_kickoff(bulk, "/fhir/Patient/$export", params={"patient": f"Patient/{pid}"}), 400)
    assert "patient" in issues[0]["diagnostics"] and "POST" in issues[0]["diagnostics"]
    # system level: not applicable
    issues = _outcome(_post(bulk, "/fhir/$export", [_patient_ref(pid)]), 400)
    assert "patient" in issues[0]["diagnostics"]


# -- c. includeAssociatedData ---------------------------------------------------------------


@dataclass(frozen=True)
class _Prov:
    p1: str
    p2: str
    o1: str
    o2: str
    #: Provenance ids by what they are about
    prov: dict[str, str]


def _provenance_fixture(bulk) -> _Prov:
    p1, p2 = _patient(bulk, "Prov"), _patient(bulk, "Other")
    o1, o2 = _observation(bulk, p1), _observation(bulk, p2)
    org = _create(bulk, {"resourceType": "Organization", "name": "RS"})
    prov = {
        "o1-old": _provenance(bulk, f"Observation/{o1}", "2024-01-01T00:00:00Z"),
        "o1-new": _provenance(bulk, f"Observation/{o1}", "2024-06-01T00:00:00+07:00"),
        "o2": _provenance(bulk, f"Observation/{o2}", "2024-02-01T00:00:00Z"),
        "org": _provenance(bulk, f"Organization/{org}", "2024-03-01T00:00:00Z"),
        "p1": _provenance(bulk, f"Patient/{p1}", "2024-03-01T00:00:00Z"),
    }
    return _Prov(p1, p2, o1, o2, prov)


def test_relevant_provenance_resources_adds_every_provenance_of_the_exported_resources(bulk, worker):
    f = _provenance_fixture(bulk)
    o1, o2, prov = f.o1, f.o2, f.prov
    manifest = _export(
        bulk, "/fhir/Patient/$export", params={"_type": "Observation", "includeAssociatedData": "RelevantProvenanceResources"}
    )
    ids = _ids(_files(bulk, manifest))
    assert ids == {"Observation": {o1, o2}, "Provenance": {prov["o1-old"], prov["o1-new"], prov["o2"]}}
    assert manifest["error"] == []

    # POST with a valueCode; the provenance of resources outside the export is not associated data
    manifest = _post_export(
        bulk,
        "/fhir/$export",
        [{"name": "_type", "valueString": "Organization"}, {"name": "includeAssociatedData", "valueCode": "RelevantProvenanceResources"}],
    )
    assert _ids(_files(bulk, manifest))["Provenance"] == {prov["org"]}


def test_latest_provenance_resources_keeps_the_most_recent_per_resource(bulk, worker):
    prov = _provenance_fixture(bulk).prov
    manifest = _export(bulk, "/fhir/$export", params={"_type": "Observation", "includeAssociatedData": "LatestProvenanceResources"})
    # o1-new was recorded at 2024-05-31T17:00Z, after o1-old
    assert _ids(_files(bulk, manifest))["Provenance"] == {prov["o1-new"], prov["o2"]}

    # at system level without _type, Latest replaces the full Provenance file ("other Provenance
    # resources will not be returned"); the targets' types decide: org and p1 are latest of theirs
    manifest = _export(bulk, "/fhir/$export", params={"includeAssociatedData": "LatestProvenanceResources"})
    assert _ids(_files(bulk, manifest))["Provenance"] == {prov["o1-new"], prov["o2"], prov["org"], prov["p1"]}

    # both values: the least restrictive one (Relevant) applies
    manifest = _export(
        bulk,
        "/fhir/$export",
        params=[("_type", "Observation"), ("includeAssociatedData", "LatestProvenanceResources,RelevantProvenanceResources")],
    )
    assert _ids(_files(bulk, manifest))["Provenance"] == {prov["o1-old"], prov["o1-new"], prov["o2"]}


def test_patient_level_export_holds_the_provenance_of_compartment_resources(bulk, worker):
    # IG: without includeAssociatedData, a patient level export SHALL include the Provenance
    # resources whose target is a resource in the Patient compartment
    f = _provenance_fixture(bulk)
    p1, o1, prov = f.p1, f.o1, f.prov
    manifest = _export(bulk, "/fhir/Patient/$export")
    assert _ids(_files(bulk, manifest))["Provenance"] == {prov["o1-old"], prov["o1-new"], prov["o2"], prov["p1"]}
    group = _create(
        bulk, {"resourceType": "Group", "type": "person", "actual": True, "member": [{"entity": {"reference": f"Patient/{p1}"}}]}
    )
    manifest = _export(bulk, f"/fhir/Group/{group}/$export", params={"_type": "Patient,Observation,Provenance"})
    assert _ids(_files(bulk, manifest)) == {
        "Patient": {p1},
        "Observation": {o1},
        "Provenance": {prov["o1-old"], prov["o1-new"], prov["p1"]},
    }


def test_unsupported_include_associated_data_values_are_refused_or_ignored_and_reported(bulk, worker):
    prov = _provenance_fixture(bulk).prov
    for value, unsupported in (
        ("_myCustomPreset", "_myCustomPreset"),
        ("SomethingElse", "SomethingElse"),
        ("LatestProvenanceResources,_myCustomPreset", "_myCustomPreset"),
    ):
        issues = _outcome(_kickoff(bulk, "/fhir/Patient/$export", params={"includeAssociatedData": value}), 400)
        assert issues[0]["code"] == "not-supported"
        assert "includeAssociatedData" in issues[0]["diagnostics"] and unsupported in issues[0]["diagnostics"]

    # lenient: the unsupported value is ignored (the supported one applies) and reported
    resp = _kickoff(
        bulk,
        "/fhir/Patient/$export",
        params={"_type": "Observation", "includeAssociatedData": "LatestProvenanceResources,_myCustomPreset"},
        headers=LENIENT,
    )
    assert resp.status_code == 202, resp.text
    manifest = wait_done(bulk, resp.headers["Content-Location"]).json()
    assert _ids(_files(bulk, manifest))["Provenance"] == {prov["o1-new"], prov["o2"]}
    reported = _error_file(bulk, manifest)
    assert len(reported) == 1 and "_myCustomPreset" in reported[0]["issue"][0]["diagnostics"]


# -- d. _since in the future ----------------------------------------------------------------


def test_since_in_the_future_is_400(bulk):
    future = to_instant(now_us() + 3_600_000_000)
    for path in ("/fhir/$export", "/fhir/Patient/$export"):
        issues = _outcome(_kickoff(bulk, path, params={"_since": future}), 400)
        assert "_since" in issues[0]["diagnostics"] and "future" in issues[0]["diagnostics"]
        _outcome(_kickoff(bulk, path, params={"_since": future}, headers=LENIENT), 400)  # a wrong value, not an unsupported one
    _outcome(_post(bulk, "/fhir/$export", [{"name": "_since", "valueInstant": "2999-01-01T00:00:00Z"}]), 400)
    # a date-only value covering today starts in the past: accepted
    today = to_instant(now_us())[:10]
    assert _kickoff(bulk, "/fhir/$export", params={"_since": today}).status_code == 202


# -- e. lenient handling is reported in the manifest's error array --------------------------


def _error_file(client, manifest: dict) -> list[dict]:
    assert [e["type"] for e in manifest["error"]] == ["OperationOutcome"]
    item = manifest["error"][0]
    resp = client.get(item["url"])
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/fhir+ndjson")
    lines = [json.loads(line) for line in resp.content.splitlines()]
    assert item["count"] == len(lines)
    assert all(o["resourceType"] == "OperationOutcome" for o in lines)
    return lines


def test_lenient_reports_each_ignored_parameter_in_the_error_array(bulk, worker):
    pid = _patient(bulk, "Lenient")
    _observation(bulk, pid)
    resp = _kickoff(
        bulk,
        "/fhir/Patient/$export",
        params=[
            ("_typeFilter", "Condition?clinical-status=active"),
            ("_until", "2026-01-01"),
            ("_type", "Patient,Observation,Organization"),
        ],
        headers=LENIENT,
    )
    assert resp.status_code == 202, resp.text
    manifest = wait_done(bulk, resp.headers["Content-Location"]).json()
    assert {o["type"]: o["count"] for o in manifest["output"]} == {"Patient": 1, "Observation": 1}
    outcomes = _error_file(bulk, manifest)
    texts = sorted(o["issue"][0]["diagnostics"] for o in outcomes)
    assert len(texts) == 3
    assert any("_typeFilter" in t and "Condition?clinical-status=active" in t for t in texts)  # a type not exported
    assert any("_until" in t for t in texts)
    assert any("Organization" in t and "_type" in t for t in texts)
    assert all(o["issue"][0]["severity"] == "warning" for o in outcomes)
    assert manifest["error"][0]["url"].startswith(f"{BASE}/$export-file/")

    # nothing ignored: an empty error array, as before
    manifest = _export(bulk, "/fhir/Patient/$export", params={"_type": "Patient"}, headers=LENIENT)
    assert manifest["error"] == []
