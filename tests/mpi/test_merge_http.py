"""Patient/$merge and Patient/$unmerge over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import orjson
import pytest
import sqlalchemy as sa

from tests.mpi.helpers import NIK, SITI, SITI_NIK, patient

JSON = {"Content-Type": "application/fhir+json"}
AMB = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}


def create(client, resource) -> str:
    r = client.post(f"/fhir/{resource['resourceType']}", content=orjson.dumps(resource), headers=JSON)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def op(client, name, *params):
    body = {"resourceType": "Parameters", "parameter": list(params)}
    return client.post(f"/fhir/Patient/${name}", content=orjson.dumps(body), headers=JSON)


def ref(name, res_id):
    return {"name": name, "valueReference": {"reference": f"Patient/{res_id}"}}


def out(response, name):
    return next(p["resource"] for p in response.json()["parameter"] if p["name"] == name)


@pytest.fixture
def records(client):
    target = create(client, SITI)
    source = create(client, patient("SITI AMINAH", birth="1990-06-05", gender="female", bpjs="0001234500001"))
    encounter = create(
        client, {"resourceType": "Encounter", "status": "finished", "class": AMB, "subject": {"reference": f"Patient/{source}"}}
    )
    coverage = create(
        client,
        {
            "resourceType": "Coverage",
            "status": "active",
            "beneficiary": {"reference": f"http://testserver/fhir/Patient/{source}"},
            "payor": [{"display": "BPJS Kesehatan"}],
        },
    )
    untouched = create(
        client, {"resourceType": "Encounter", "status": "finished", "class": AMB, "subject": {"reference": f"Patient/{target}"}}
    )
    return {"target": target, "source": source, "encounter": encounter, "coverage": coverage, "untouched": untouched}


def read(client, res_type, res_id):
    return client.get(f"/fhir/{res_type}/{res_id}").json()


def test_merge_moves_every_reference_and_links_the_two_records(client, records):
    r = op(client, "merge", ref("source-patient", records["source"]), ref("target-patient", records["target"]))
    assert r.status_code == 200, r.text
    result = out(r, "result")
    assert result["id"] == records["target"]
    source = read(client, "Patient", records["source"])
    assert source["active"] is False
    assert {"other": {"reference": f"Patient/{records['target']}"}, "type": "replaced-by"} in source["link"]
    target = read(client, "Patient", records["target"])
    assert {"other": {"reference": f"Patient/{records['source']}"}, "type": "replaces"} in target["link"]
    moved = [i for i in target["identifier"] if i.get("use") == "old"]
    assert moved == [{"system": "https://fhir-server.id/id/bpjs-kartu", "value": "0001234500001", "use": "old"}]
    assert read(client, "Encounter", records["encounter"])["subject"]["reference"] == f"Patient/{records['target']}"
    assert (
        read(client, "Coverage", records["coverage"])["beneficiary"]["reference"] == f"http://testserver/fhir/Patient/{records['target']}"
    )
    assert read(client, "Encounter", records["untouched"])["meta"]["versionId"] == "1"
    searched = client.get(f"/fhir/Encounter?subject=Patient/{records['source']}").json()
    assert searched.get("entry", []) == []

    diagnostics = out(r, "outcome")["issue"][-1]["diagnostics"]
    provenance_id = diagnostics.split("Provenance/")[1].split(" ")[0]
    prov = read(client, "Provenance", provenance_id)
    assert prov["activity"]["coding"][0]["code"] == "merge"
    targets = {t["reference"].split("/_history/")[0] for t in prov["target"]}
    assert targets == {
        f"Patient/{records['target']}",
        f"Patient/{records['source']}",
        f"Encounter/{records['encounter']}",
        f"Coverage/{records['coverage']}",
    }


def test_every_write_of_a_merge_is_in_the_change_log(client, records):
    engine = client.app.state.fhir.db.engine
    with engine.connect() as conn:
        before = conn.execute(sa.text("SELECT count(*) FROM change_log")).scalar_one()
    assert op(client, "merge", ref("source-patient", records["source"]), ref("target-patient", records["target"])).status_code == 200
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT res_type, action FROM change_log ORDER BY seq")).all()[before:]
    assert sorted(t for t, _ in rows) == ["Coverage", "Encounter", "Patient", "Patient", "Provenance"]


def test_preview_changes_nothing_and_says_what_would_change(client, records):
    r = op(
        client,
        "merge",
        ref("source-patient", records["source"]),
        ref("target-patient", records["target"]),
        {"name": "preview", "valueBoolean": True},
    )
    assert r.status_code == 200, r.text
    assert "Merge would update 4 resources" in out(r, "outcome")["issue"][-1]["diagnostics"]
    assert {"type": "replaces", "other": {"reference": f"Patient/{records['source']}"}} in out(r, "result")["link"]
    assert read(client, "Patient", records["source"])["meta"]["versionId"] == "1"
    assert read(client, "Encounter", records["encounter"])["subject"]["reference"] == f"Patient/{records['source']}"


def test_source_and_target_by_identifier(client, records):
    r = op(
        client,
        "merge",
        {
            "name": "source-patient-identifier",
            "valueIdentifier": {"system": "https://fhir-server.id/id/bpjs-kartu", "value": "0001234500001"},
        },
        {"name": "target-patient-identifier", "valueIdentifier": {"system": NIK, "value": SITI_NIK}},
    )
    assert r.status_code == 200, r.text
    assert read(client, "Patient", records["source"])["active"] is False


def test_an_identifier_matching_no_patient_is_refused(client, records):
    r = op(
        client,
        "merge",
        {"name": "source-patient-identifier", "valueIdentifier": {"system": NIK, "value": "1111111111111111"}},
        ref("target-patient", records["target"]),
    )
    assert r.status_code == 422 and "exactly one" in r.json()["issue"][0]["diagnostics"]


def test_result_patient_becomes_the_target(client, records):
    result = {**patient("Siti Aminah", nik=SITI_NIK, birth="1990-06-05", gender="female"), "id": records["target"]}
    r = op(
        client,
        "merge",
        ref("source-patient", records["source"]),
        ref("target-patient", records["target"]),
        {"name": "result-patient", "resource": result},
    )
    assert r.status_code == 200, r.text
    target = read(client, "Patient", records["target"])
    assert target["name"] == [{"text": "Siti Aminah"}]
    assert target["link"] == [{"other": {"reference": f"Patient/{records['source']}"}, "type": "replaces"}]


def test_different_valid_niks_are_refused_unless_forced(client):
    a = create(client, SITI)
    b = create(client, patient("Siti Aminah", nik="3204154506900777", birth="1990-06-05", gender="female"))
    refused = op(client, "merge", ref("source-patient", b), ref("target-patient", a))
    assert refused.status_code == 422
    issue = refused.json()["issue"][0]
    assert issue["code"] == "business-rule" and "different valid NIKs" in issue["diagnostics"]
    assert read(client, "Patient", b)["meta"]["versionId"] == "1"
    forced = op(client, "merge", ref("source-patient", b), ref("target-patient", a), {"name": "force", "valueBoolean": True})
    assert forced.status_code == 200
    assert any(i["severity"] == "warning" for i in out(forced, "outcome")["issue"])


@pytest.mark.parametrize(
    "params",
    [
        [],
        [
            {"name": "source-patient", "valueReference": {"reference": "Observation/1"}},
            {"name": "target-patient", "valueReference": {"reference": "Patient/x"}},
        ],
    ],
)
def test_bad_input_is_a_400(client, params):
    assert op(client, "merge", *params).status_code == 400


def test_merging_into_itself_or_twice_is_refused(client, records):
    assert op(client, "merge", ref("source-patient", records["target"]), ref("target-patient", records["target"])).status_code == 400
    assert op(client, "merge", ref("source-patient", records["source"]), ref("target-patient", records["target"])).status_code == 200
    again = op(client, "merge", ref("source-patient", records["source"]), ref("target-patient", records["target"]))
    assert again.status_code == 422 and "already merged" in again.json()["issue"][0]["diagnostics"]


def test_a_missing_patient_is_a_404(client, records):
    assert op(client, "merge", ref("source-patient", "nope"), ref("target-patient", records["target"])).status_code == 404


def test_get_is_not_allowed_for_merge(client):
    assert client.get("/fhir/Patient/$merge").status_code == 405


def test_unmerge_restores_both_records_and_every_reference(client, records):
    merged = op(client, "merge", ref("source-patient", records["source"]), ref("target-patient", records["target"]))
    before_target = read(client, "Patient", records["target"])
    assert before_target["meta"]["versionId"] == "2"
    r = op(client, "unmerge", ref("source-patient", records["source"]))
    assert r.status_code == 200, r.text
    source, target = read(client, "Patient", records["source"]), read(client, "Patient", records["target"])
    assert "link" not in source and "active" not in source and source["meta"]["versionId"] == "3"
    assert "link" not in target and all(i.get("use") != "old" for i in target["identifier"])
    assert read(client, "Encounter", records["encounter"])["subject"]["reference"] == f"Patient/{records['source']}"
    assert (
        read(client, "Coverage", records["coverage"])["beneficiary"]["reference"] == f"http://testserver/fhir/Patient/{records['source']}"
    )
    assert merged.status_code == 200
    # and it can be merged again afterwards
    assert op(client, "merge", ref("source-patient", records["source"]), ref("target-patient", records["target"])).status_code == 200


def test_unmerge_refuses_when_a_patient_changed_since(client, records):
    merged = op(client, "merge", ref("source-patient", records["source"]), ref("target-patient", records["target"]))
    provenance_id = out(merged, "outcome")["issue"][-1]["diagnostics"].split("Provenance/")[1].split(" ")[0]
    target = read(client, "Patient", records["target"])
    target["gender"] = "female"
    target["birthDate"] = "1990-06-06"
    assert client.put(f"/fhir/Patient/{records['target']}", content=orjson.dumps(target), headers=JSON).status_code == 200
    r = op(client, "unmerge", {"name": "provenance", "valueReference": {"reference": f"Provenance/{provenance_id}"}})
    assert r.status_code == 409
    assert read(client, "Encounter", records["encounter"])["subject"]["reference"] == f"Patient/{records['target']}"  # nothing half-done


def test_merge_and_unmerge_are_declared(client):
    cs = client.get("/fhir/metadata").json()
    ops = {o["name"] for r in cs["rest"][0]["resource"] if r["type"] == "Patient" for o in r["operation"]}
    assert {"match", "merge", "unmerge"} <= ops
