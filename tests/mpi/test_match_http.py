"""Patient/$match over HTTP (R4 operation-patient-match), on SQLite and PostgreSQL."""

from __future__ import annotations

import orjson
import pytest

from fhir_server.operations.registry import definition
from tests.bundles import entries
from tests.mpi.helpers import BPJS, NIK, SITI, SITI_NIK, grade, parameters, patient

JSON = {"Content-Type": "application/fhir+json"}


def create(client, resource) -> str:
    r = client.post("/fhir/Patient", content=orjson.dumps(resource), headers=JSON)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def match(client, body):
    return client.post("/fhir/Patient/$match", content=orjson.dumps(body), headers=JSON)


@pytest.fixture
def population(client):
    ids = {
        "siti": create(client, SITI),
        "typo": create(client, patient("SITI AMINAH", nik="3204154506900008", birth="1990-06-05", gender="female")),
        "baby": create(client, patient("By. Ny. Siti Aminah", ibu=SITI_NIK, birth="2024-03-01", gender="male", village="3204152003")),
        "namesake": create(client, patient("Siti Aminah", nik="3578014307750002", birth="1975-07-03", gender="female")),
        "other": create(client, patient("Bambang Sutrisno", nik="3204150101700001", birth="1970-01-01", gender="male")),
    }
    return ids


def test_match_returns_a_searchset_ordered_by_score_with_grades(client, population):
    r = match(client, parameters(patient("Siti Aminah", nik=SITI_NIK, birth="1990-06-05", gender="female")))
    assert r.status_code == 200, r.text
    bundle = r.json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    entries = bundle["entry"]
    ids = [e["resource"]["id"] for e in entries]
    assert ids[0] == population["siti"]
    assert grade(entries[0]) == "certain"
    assert population["typo"] in ids
    assert population["other"] not in ids and population["namesake"] not in ids
    scores = [e["search"]["score"] for e in entries]
    assert scores == sorted(scores, reverse=True)
    for e in entries:
        assert e["search"]["mode"] == "match"
        assert 0 <= e["search"]["score"] <= 1
        assert e["fullUrl"] == f"http://testserver/fhir/Patient/{e['resource']['id']}"
    assert bundle["total"] == len(entries)


def test_the_newborn_is_never_above_possible_for_its_mother(client, population):
    entries = match(client, parameters(SITI)).json()["entry"]
    baby = [e for e in entries if e["resource"]["id"] == population["baby"]]
    assert all(grade(e) == "possible" for e in baby)


def test_only_certain_matches_leaves_out_the_rest(client, population):
    entries = match(
        client, parameters(patient("Siti Aminah", nik=SITI_NIK, birth="1990-06-05", gender="female"), only_certain=True)
    ).json()["entry"]
    assert [e["resource"]["id"] for e in entries] == [population["siti"]]
    assert grade(entries[0]) == "certain"


def test_count_limits_the_matches(client, population):
    entries = match(client, parameters(patient("Siti Aminah", nik=SITI_NIK, birth="1990-06-05", gender="female"), count=1)).json()["entry"]
    assert [e["resource"]["id"] for e in entries] == [population["siti"]]


def test_the_patient_itself_may_be_the_body(client, population):
    r = match(client, patient("Siti Aminah", nik=SITI_NIK, birth="1990-06-05", gender="female"))
    assert r.status_code == 200 and r.json()["entry"][0]["resource"]["id"] == population["siti"]


def test_get_takes_the_matching_fields_as_parameters(client, population):
    r = client.get(
        "/fhir/Patient/$match",
        params=[
            ("identifier", f"{NIK}|{SITI_NIK}"),
            ("name", "Siti Aminah"),
            ("birthdate", "1990-06-05"),
            ("gender", "female"),
            ("count", "1"),
        ],
    )
    assert r.status_code == 200, r.text
    assert [e["resource"]["id"] for e in r.json()["entry"]] == [population["siti"]]


def test_a_bpjs_card_alone_finds_the_patient(client):
    pid = create(client, patient("Siti Aminah", bpjs="0001234500001", birth="1990-06-05", gender="female"))
    r = client.get("/fhir/Patient/$match", params=[("identifier", f"{BPJS}|0001234500001")])
    assert [e["resource"]["id"] for e in r.json()["entry"]] == [pid]


def test_no_match_is_an_empty_searchset_not_an_error(client, population):
    r = match(client, parameters(patient("Yohanes Kristianto", birth="1955-02-02", gender="male")))
    assert r.status_code == 200
    assert r.json()["type"] == "searchset" and entries(r.json()) == [] and r.json()["total"] == 0


@pytest.mark.parametrize(
    "body",
    [
        parameters(patient("Siti Aminah")),  # a name alone
        parameters({"resourceType": "Patient", "gender": "female"}),
        parameters({"resourceType": "Observation", "status": "final", "code": {"text": "x"}}),
        {"resourceType": "Parameters", "parameter": [{"name": "count", "valueInteger": 2}]},
        parameters(SITI, count=0),
        {"resourceType": "Observation", "status": "final"},
    ],
)
def test_too_little_or_the_wrong_input_is_a_400_operation_outcome(client, body):
    r = match(client, body)
    assert r.status_code == 400, r.text
    assert r.json()["resourceType"] == "OperationOutcome"


def test_get_with_an_unknown_parameter_is_a_400(client):
    r = client.get("/fhir/Patient/$match", params={"nik": SITI_NIK})
    assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"


def test_a_reached_candidate_limit_is_reported_in_an_operation_outcome(client, monkeypatch):
    for i in range(4):
        create(client, patient("Siti Aminah", birth="1990-06-05", gender="female", phone=f"08120000{i:04d}"))
    monkeypatch.setattr(client.app.state.fhir.services.mpi, "per_key_limit", 2)
    entries = match(client, parameters(patient("Siti Aminah", birth="1990-06-05", gender="female"))).json()["entry"]
    outcomes = [e for e in entries if e["search"]["mode"] == "outcome"]
    assert len(outcomes) == 1
    issue = outcomes[0]["resource"]["issue"][0]
    assert issue["severity"] == "warning" and issue["code"] == "too-costly"
    assert "candidate limit (2 per blocking key)" in issue["diagnostics"]
    assert len([e for e in entries if e["search"]["mode"] == "match"]) <= 2 * 4


def test_keys_follow_updates_and_deletes(client):
    pid = create(client, patient("Siti Aminah", nik=SITI_NIK, birth="1990-06-05", gender="female"))
    query = parameters(patient("x", nik=SITI_NIK))
    assert [e["resource"]["id"] for e in entries(match(client, query).json())] == [pid]
    changed = {**patient("Siti Aminah", nik="3204154506900777", birth="1990-06-05", gender="female"), "id": pid}
    assert client.put(f"/fhir/Patient/{pid}", content=orjson.dumps(changed), headers=JSON).status_code == 200
    assert entries(match(client, parameters(patient("x", nik="3204154506900777"))).json())[0]["resource"]["id"] == pid
    assert all(e["resource"]["id"] != pid or grade(e) != "certain" for e in entries(match(client, query).json()))
    assert client.delete(f"/fhir/Patient/{pid}").status_code in (200, 204)
    assert entries(match(client, parameters(patient("x", nik="3204154506900777"))).json()) == []


def test_transaction_bundle_entries_are_indexed_too(client):
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:1", "resource": SITI, "request": {"method": "POST", "url": "Patient"}},
        ],
    }
    r = client.post("/fhir", content=orjson.dumps(bundle), headers=JSON)
    assert r.status_code == 200, r.text
    pid = r.json()["entry"][0]["response"]["location"].split("/")[1]
    entries = match(client, parameters(patient("Siti Aminah", nik=SITI_NIK, birth="1990-06-05", gender="female"))).json()["entry"]
    assert entries[0]["resource"]["id"] == pid and grade(entries[0]) == "certain"


def test_match_is_declared_in_the_capability_statement(client):
    cs = client.get("/fhir/metadata").json()
    patient_entry = next(r for r in cs["rest"][0]["resource"] if r["type"] == "Patient")
    ops = {o["name"]: o["definition"] for o in patient_entry["operation"]}
    assert ops["match"] == "http://hl7.org/fhir/OperationDefinition/Patient-match"
    assert definition("Patient-match")["code"] == "match"  # seeded as a resource at start-up (service/seed.py)
