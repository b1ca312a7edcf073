"""$validate, $everything, $meta, $meta-add, $meta-delete and their CapabilityStatement entries."""

from __future__ import annotations

import orjson
import pytest

from tests.api.test_rest_crud import PATIENT, post
from tests.bundles import entries

FHIR = {"Content-Type": "application/fhir+json"}
AMB = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}


def op(client, url, body=None):
    return client.post(url, content=orjson.dumps(body) if body is not None else b"", headers={"Content-Type": "application/fhir+json"})


def test_validate_a_valid_resource(client):
    r = op(client, "/fhir/Patient/$validate", PATIENT)
    assert r.status_code == 200
    assert r.json()["resourceType"] == "OperationOutcome"
    assert all(i["severity"] not in ("error", "fatal") for i in r.json()["issue"])


def test_validate_reports_errors_without_storing(client):
    r = op(client, "/fhir/Patient/$validate", {**PATIENT, "gender": "boy"})
    assert r.status_code == 200
    issues = r.json()["issue"]
    assert any(i["severity"] == "error" and i["expression"] == ["Patient.gender"] for i in issues)
    assert entries(client.get("/fhir/Patient").json()) == []


def test_validate_with_parameters_mode_and_profile(client):
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "resource", "resource": PATIENT},
            {"name": "mode", "valueCode": "create"},
            {"name": "profile", "valueUri": "https://fhir.kemkes.go.id/r4/StructureDefinition/Patient"},
        ],
    }
    r = op(client, "/fhir/Patient/$validate", body)
    assert r.status_code == 200
    assert any(i["severity"] == "warning" and "Profile" in i["diagnostics"] for i in r.json()["issue"])


def test_validate_mode_delete_and_update_on_an_instance(client):
    pid = post(client, PATIENT).json()["id"]
    params = {"resourceType": "Parameters", "parameter": [{"name": "mode", "valueCode": "delete"}]}
    assert op(client, f"/fhir/Patient/{pid}/$validate", params).status_code == 200
    assert op(client, "/fhir/Patient/missing/$validate", params).status_code == 404
    upd = {
        "resourceType": "Parameters",
        "parameter": [{"name": "mode", "valueCode": "update"}, {"name": "resource", "resource": {**PATIENT, "id": "other"}}],
    }
    assert any(i["severity"] == "error" for i in op(client, f"/fhir/Patient/{pid}/$validate", upd).json()["issue"])


def test_validate_rejects_bad_mode_and_missing_resource(client):
    assert (
        op(client, "/fhir/Patient/$validate", {"resourceType": "Parameters", "parameter": [{"name": "mode", "valueCode": "x"}]}).status_code
        == 400
    )
    assert op(client, "/fhir/Patient/$validate").status_code == 400


def test_patient_everything_returns_the_compartment_in_pages(client):
    pid = post(client, PATIENT).json()["id"]
    other = post(client, PATIENT).json()["id"]
    encounters = [
        post(
            client,
            {
                "resourceType": "Encounter",
                "status": "finished",
                "class": AMB,
                "subject": {"reference": f"Patient/{pid}"},
                "period": {"start": f"2026-0{m}-01T08:00:00+07:00"},
            },
            "Encounter",
        ).json()["id"]
        for m in (1, 2, 3)
    ]
    post(
        client, {"resourceType": "Encounter", "status": "finished", "class": AMB, "subject": {"reference": f"Patient/{other}"}}, "Encounter"
    )
    cond = post(
        client, {"resourceType": "Condition", "subject": {"reference": f"Patient/{pid}"}, "code": {"text": "ISPA"}}, "Condition"
    ).json()["id"]
    seen, url = [], f"/fhir/Patient/{pid}/$everything?_count=2"
    while url:
        bundle = client.get(url).json()
        assert bundle["type"] == "searchset"
        seen += [(e["resource"]["resourceType"], e["resource"]["id"]) for e in bundle["entry"]]
        nxt = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
        url = nxt[0].replace("http://testserver", "") if nxt else None
    assert seen[0] == ("Patient", pid)
    assert sorted(seen[1:]) == sorted([("Encounter", e) for e in encounters] + [("Condition", cond)])


def test_patient_everything_lists_each_current_member_once(client):
    """A member pointing at the Patient by two parameters (an Observation's subject and performer)
    comes once; a deleted member does not come; pages of one walk every member exactly once."""
    pid = post(client, PATIENT).json()["id"]
    twice = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "Suhu"},
        "subject": {"reference": f"Patient/{pid}"},
        "performer": [{"reference": f"Patient/{pid}"}],
    }
    kept = [post(client, twice, "Observation").json()["id"] for _ in range(3)]
    gone = post(client, twice, "Observation").json()["id"]
    assert client.delete(f"/fhir/Observation/{gone}").status_code in (200, 204)
    for count in (1, 2, 10):
        seen, url = [], f"/fhir/Patient/{pid}/$everything?_count={count}"
        while url:
            bundle = client.get(url).json()
            seen += [e["resource"]["id"] for e in bundle.get("entry", [])]
            nxt = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
            url = nxt[0].replace("http://testserver", "") if nxt else None
        assert seen == [pid, *kept], count


def test_patient_everything_filters(client):
    pid = post(client, PATIENT).json()["id"]
    for m in (1, 6):
        post(
            client,
            {
                "resourceType": "Encounter",
                "status": "finished",
                "class": AMB,
                "subject": {"reference": f"Patient/{pid}"},
                "period": {"start": f"2026-0{m}-01T08:00:00+07:00", "end": f"2026-0{m}-01T09:00:00+07:00"},
            },
            "Encounter",
        )
    post(client, {"resourceType": "Condition", "subject": {"reference": f"Patient/{pid}"}, "code": {"text": "ISPA"}}, "Condition")
    only_enc = client.get(f"/fhir/Patient/{pid}/$everything?_type=Encounter").json()["entry"]
    assert {e["resource"]["resourceType"] for e in only_enc} == {"Encounter"}
    ranged = client.get(f"/fhir/Patient/{pid}/$everything?start=2026-05-01&end=2026-12-31").json()["entry"]
    kinds = sorted(e["resource"]["resourceType"] for e in ranged)
    assert kinds == ["Condition", "Encounter", "Patient"]
    assert client.get("/fhir/Patient/nobody/$everything").status_code == 404
    assert client.get(f"/fhir/Patient/{pid}/$everything?_type=Nope").status_code == 400


def test_encounter_everything(client):
    pid = post(client, PATIENT).json()["id"]
    eid = post(
        client, {"resourceType": "Encounter", "status": "finished", "class": AMB, "subject": {"reference": f"Patient/{pid}"}}, "Encounter"
    ).json()["id"]
    obs = post(
        client,
        {"resourceType": "Observation", "status": "final", "code": {"text": "Suhu"}, "encounter": {"reference": f"Encounter/{eid}"}},
        "Observation",
    ).json()["id"]
    entries = client.get(f"/fhir/Encounter/{eid}/$everything").json()["entry"]
    assert [(e["resource"]["resourceType"], e["resource"]["id"]) for e in entries] == [("Encounter", eid), ("Observation", obs)]


TAG = {"system": "https://fhir-server.id/tags", "code": "bpjs"}


def test_meta_add_meta_delete_and_meta(client):
    pid = post(client, PATIENT).json()["id"]
    add = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "meta", "valueMeta": {"tag": [TAG], "profile": ["https://fhir.kemkes.go.id/r4/StructureDefinition/Patient"]}}
        ],
    }
    r = op(client, f"/fhir/Patient/{pid}/$meta-add", add)
    assert r.status_code == 200, r.text
    assert r.json()["parameter"][0]["valueMeta"]["tag"] == [TAG]
    stored = client.get(f"/fhir/Patient/{pid}").json()
    assert stored["meta"]["versionId"] == "1" and stored["meta"]["tag"] == [TAG]
    assert [e["resource"]["id"] for e in client.get("/fhir/Patient?_tag=https://fhir-server.id/tags|bpjs").json()["entry"]] == [pid]
    assert client.get(f"/fhir/Patient/{pid}/$meta").json()["parameter"][0]["valueMeta"]["tag"] == [TAG]
    assert client.get("/fhir/Patient/$meta").json()["parameter"][0]["valueMeta"]["tag"] == [TAG]
    assert client.get("/fhir/$meta").json()["parameter"][0]["valueMeta"]["profile"] == [
        "https://fhir.kemkes.go.id/r4/StructureDefinition/Patient"
    ]
    remove = {"resourceType": "Parameters", "parameter": [{"name": "meta", "valueMeta": {"tag": [TAG]}}]}
    assert "tag" not in op(client, f"/fhir/Patient/{pid}/$meta-delete", remove).json()["parameter"][0]["valueMeta"]
    assert entries(client.get("/fhir/Patient?_tag=https://fhir-server.id/tags|bpjs").json()) == []


def test_meta_answers_are_valid_fhir_when_there_is_nothing_to_list(client):
    """An empty Meta (``"valueMeta": {}``) is not FHIR JSON: $meta of an untagged resource, of a
    type or the system with no tags, and $meta-delete of the last tag answered it."""
    from fhir_server.model.structure import check_structure

    pid = post(client, PATIENT).json()["id"]
    answers = {
        "instance": client.get(f"/fhir/Patient/{pid}/$meta").json(),
        "type": client.get("/fhir/Patient/$meta").json(),
        "system": client.get("/fhir/$meta").json(),
    }
    add = {"resourceType": "Parameters", "parameter": [{"name": "meta", "valueMeta": {"tag": [TAG]}}]}
    assert op(client, f"/fhir/Patient/{pid}/$meta-add", add).status_code == 200
    answers["delete"] = op(client, f"/fhir/Patient/{pid}/$meta-delete", add).json()
    for where, answer in answers.items():
        assert answer["resourceType"] == "Parameters", where
        assert check_structure(answer) == [], (where, answer)
    # the instance's meta is the resource's: never empty
    for where in ("instance", "delete"):
        meta = answers[where]["parameter"][0]["valueMeta"]
        assert meta["versionId"] == "1" and "lastUpdated" in meta and "tag" not in meta, where
    assert "parameter" not in answers["type"] and "parameter" not in answers["system"]


def test_meta_add_needs_post_and_a_meta_parameter(client):
    pid = post(client, PATIENT).json()["id"]
    assert client.get(f"/fhir/Patient/{pid}/$meta-add").status_code == 405
    assert op(client, f"/fhir/Patient/{pid}/$meta-add", {"resourceType": "Parameters"}).status_code == 400


def test_unknown_operation_is_404(client):
    assert client.get("/fhir/Patient/$nope").status_code == 404
    assert client.post("/fhir/$everything").status_code == 404


def test_an_operation_asked_at_the_wrong_level_says_where_it_is(client):
    # Patient-everything's definition lets a server refuse the type level (all patients at once)
    everyone = client.get("/fhir/Patient/$everything")
    assert everyone.status_code == 404
    said = everyone.json()["issue"][0]["diagnostics"]
    assert "Patient/[id]/$everything" in said and "$export" in said
    pid = post(client, PATIENT).json()["id"]
    instance = client.post(
        f"/fhir/Patient/{pid}/$match", json={"resourceType": "Parameters"}, headers={"Content-Type": "application/fhir+json"}
    )
    assert instance.status_code == 404 and "Patient/$match" in instance.json()["issue"][0]["diagnostics"]


def test_operations_are_advertised_with_definitions_that_can_be_read(app_client):
    rest = app_client.get("/fhir/metadata").json()["rest"][0]
    patient = next(r for r in rest["resource"] if r["type"] == "Patient")
    ops = {o["name"]: o["definition"] for o in patient["operation"]}
    assert ops["everything"] == "http://hl7.org/fhir/OperationDefinition/Patient-everything"
    assert ops["validate"] == "http://hl7.org/fhir/OperationDefinition/Resource-validate"
    assert {"meta", "meta-add", "meta-delete"} <= set(ops)
    coverage = next(r for r in rest["resource"] if r["type"] == "Coverage")
    assert "everything" not in {o["name"] for o in coverage["operation"]}
    assert {o["name"] for o in rest["operation"]} == {"meta", "import-bpjs-peserta", "export", "validate", "satusehat-status", "versions"}
    from fhir_server.service.seed import seed_conformance

    seed_conformance(app_client.app.state.fhir.resources)
    od = app_client.get("/fhir/OperationDefinition/Patient-everything")
    assert od.status_code == 200 and od.json()["code"] == "everything"


def test_patient_everything_since(client):
    import time

    pid = post(client, PATIENT).json()["id"]
    old = post(
        client, {"resourceType": "Condition", "subject": {"reference": f"Patient/{pid}"}, "code": {"text": "lama"}}, "Condition"
    ).json()
    time.sleep(0.01)
    new = post(
        client, {"resourceType": "Condition", "subject": {"reference": f"Patient/{pid}"}, "code": {"text": "baru"}}, "Condition"
    ).json()
    since = new["meta"]["lastUpdated"]
    ids = [e["resource"]["id"] for e in client.get(f"/fhir/Patient/{pid}/$everything", params={"_since": since}).json()["entry"]]
    assert new["id"] in ids and old["id"] not in ids


# a Parameters body whose ``parameter`` (or a ``part``) is not an array of objects: 400 naming it,
# on every operation that reads one, and on a FHIRPath Patch (it was iterated as it came: 500)
_SHAPELESS = [5, True, "x", [1], [["a"]], {"name": "resource"}]


@pytest.mark.parametrize(
    "path",
    [
        "/fhir/Patient/$validate",
        "/fhir/Patient/p1/$everything",
        "/fhir/Patient/$match",
        "/fhir/Patient/p1/$meta-add",
        "/fhir/CodeSystem/$lookup",
        "/fhir/ValueSet/$expand",
        "/fhir/ConceptMap/$translate",
    ],
)
def test_a_parameters_body_whose_parameter_is_not_an_array_of_objects_is_400(client, path):
    client.put("/fhir/Patient/p1", json={"resourceType": "Patient", "id": "p1"}, headers=FHIR)
    for parameter in _SHAPELESS:
        r = client.post(path, json={"resourceType": "Parameters", "parameter": parameter}, headers=FHIR)
        assert r.status_code == 400, (parameter, r.text)
        issue = r.json()["issue"][0]
        assert issue["expression"] == ["Parameters.parameter"], issue


def test_a_fhirpath_patch_whose_parts_are_not_objects_with_names_is_400(client):
    client.put("/fhir/Patient/p1", json={"resourceType": "Patient", "id": "p1", "active": True}, headers=FHIR)
    for part in _SHAPELESS:
        body = {"resourceType": "Parameters", "parameter": [{"name": "operation", "part": part}]}
        r = client.patch("/fhir/Patient/p1", json=body, headers=FHIR)
        assert r.status_code == 400, (part, r.text)
        assert r.json()["issue"][0]["expression"] == ["Parameters.parameter[0].part"], r.text
    unnamed = {"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [{"name": ["type"], "valueCode": "delete"}]}]}
    r = client.patch("/fhir/Patient/p1", json=unnamed, headers=FHIR)
    assert r.status_code == 400, r.text
    assert r.json()["issue"][0]["expression"] == ["Parameters.parameter[0].part[0]"], r.text
    assert client.get("/fhir/Patient/p1").json()["meta"]["versionId"] == "1"


def test_system_meta_lists_each_profile_in_use_once_in_order(client):
    """``$meta`` at system level walks the profile index value by value (storage/index_queries.py):
    each profile once, in order, those of deleted resources left out."""
    profiles = ["https://fhir.kemkes.go.id/r4/StructureDefinition/Patient", "http://example.org/b", "http://example.org/a"]
    ids = []
    for url in profiles * 2:
        ids.append(post(client, {**PATIENT, "meta": {"profile": [url]}}).json()["id"])
    assert (
        post(
            client, {"resourceType": "Organization", "name": "RS", "meta": {"profile": ["http://example.org/a"]}}, "Organization"
        ).status_code
        == 201
    )
    gone = post(client, {**PATIENT, "meta": {"profile": ["http://example.org/deleted"]}}).json()["id"]
    assert client.delete(f"/fhir/Patient/{gone}").status_code in (200, 204)
    listed = client.get("/fhir/$meta").json()["parameter"][0]["valueMeta"]["profile"]
    assert listed == sorted(set(profiles))
    assert client.get("/fhir/Organization/$meta").json()["parameter"][0]["valueMeta"]["profile"] == ["http://example.org/a"]
