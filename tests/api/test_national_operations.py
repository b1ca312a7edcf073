"""$import-dukcapil, $import-bpjs-peserta, $import-sep, $import-pcare and the reverse views, over HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from tests.bundles import entries

FIXTURES = Path(__file__).resolve().parents[1] / "mappings" / "fixtures"
NIK = "https://fhir.kemkes.go.id/id/nik"


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def send(client, url: str, payload) -> object:
    return client.post(url, content=orjson.dumps(payload), headers={"Content-Type": "application/json"})


def statuses(response) -> list[str]:
    return [e["response"]["status"] for e in response.json()["entry"]]


def the_patient(client) -> dict:
    entries = client.get("/fhir/Patient", params={"identifier": f"{NIK}|3204154506900003"}).json()["entry"]
    assert len(entries) == 1
    return entries[0]["resource"]


def test_import_dukcapil_creates_a_satusehat_patient_once(client):
    first = send(client, "/fhir/Patient/$import-dukcapil", fixture("dukcapil_call_nik.json"))
    assert first.status_code == 200, first.text
    assert first.json()["type"] == "transaction-response"
    assert "201 Created" in statuses(first)
    patient = the_patient(client)
    assert patient["gender"] == "female" and patient["birthDate"] == "1990-06-05"
    admin = next(e for e in patient["address"][0]["extension"] if e["url"].endswith("/administrativeCode"))
    assert {"url": "village", "valueCode": "3204152003"} in admin["extension"]
    again = send(client, "/fhir/Patient/$import-dukcapil", fixture("dukcapil_call_nik.json"))
    assert set(statuses(again)) == {"200 OK"}
    assert the_patient(client)["meta"]["versionId"] == patient["meta"]["versionId"]


def test_bpjs_import_fills_gaps_without_erasing_dukcapil_data(client):
    send(client, "/fhir/Patient/$import-dukcapil", fixture("dukcapil_call_nik.json"))
    before = the_patient(client)
    r = send(client, "/fhir/$import-bpjs-peserta", fixture("bpjs_peserta.json"))
    assert r.status_code == 200, r.text
    after = the_patient(client)
    assert after["address"] == before["address"]
    coverage = client.get("/fhir/Coverage", params={"beneficiary": f"Patient/{after['id']}"}).json()["entry"]
    assert len(coverage) == 1 and coverage[0]["resource"]["subscriberId"] == "0001234500001"
    twice = send(client, "/fhir/$import-bpjs-peserta", fixture("bpjs_peserta.json"))
    assert set(statuses(twice)) == {"200 OK"}


def test_import_sep_and_pcare_are_idempotent(client):
    for url, name in (("/fhir/Encounter/$import-sep", "sep_response.json"), ("/fhir/Encounter/$import-pcare", "pcare_kunjungan.json")):
        first = send(client, url, fixture(name))
        assert first.status_code == 200, first.text
        second = send(client, url, fixture(name))
        assert set(statuses(second)) == {"200 OK"}, name
    assert len(client.get("/fhir/Encounter").json()["entry"]) == 2


def test_bad_native_payload_is_an_outcome_naming_the_field_and_stores_nothing(client):
    bad = fixture("dukcapil_call_nik.json")
    bad["content"][0]["NIK"] = "12345"
    r = send(client, "/fhir/Patient/$import-dukcapil", bad)
    assert r.status_code in (400, 422)
    assert "NIK" in json.dumps(r.json()["issue"])
    assert entries(client.get("/fhir/Patient").json()) == []


def test_dukcapil_error_inside_content_is_not_a_patient(client):
    r = send(client, "/fhir/Patient/$import-dukcapil", {"content": [{"RESPON": "Data Tidak Ditemukan", "RESPONSE_CODE": "13"}]})
    assert r.status_code in (400, 404, 422)
    assert r.json()["resourceType"] == "OperationOutcome"


def test_reverse_views(client):
    send(client, "/fhir/Patient/$import-dukcapil", fixture("dukcapil_call_nik.json"))
    send(client, "/fhir/$import-bpjs-peserta", fixture("bpjs_peserta.json"))
    send(client, "/fhir/Encounter/$import-sep", fixture("sep_response.json"))
    patient = the_patient(client)
    dukcapil = client.get(f"/fhir/Patient/{patient['id']}/$dukcapil")
    assert dukcapil.status_code == 200 and dukcapil.headers["content-type"].startswith("application/json")
    assert str(dukcapil.json()["content"][0]["NIK"]) == "3204154506900003"
    coverage = client.get("/fhir/Coverage").json()["entry"][0]["resource"]
    peserta = client.get(f"/fhir/Coverage/{coverage['id']}/$bpjs-peserta").json()
    assert json.dumps(peserta).count("0001234500001") >= 1
    encounter = client.get("/fhir/Encounter").json()["entry"][0]["resource"]
    sep = client.get(f"/fhir/Encounter/{encounter['id']}/$sep?view=response")
    assert sep.status_code == 200 and "0000R0010324V000001" in sep.text
    assert client.get(f"/fhir/Encounter/{encounter['id']}/$sep?view=nope").status_code == 400


@pytest.mark.parametrize(
    "name,level",
    [
        ("import-dukcapil", "Patient"),
        ("import-bpjs-peserta", None),
        ("import-sep", "Encounter"),
        ("import-pcare", "Encounter"),
        ("dukcapil", "Patient"),
        ("bpjs-peserta", "Coverage"),
        ("sep", "Encounter"),
    ],
)
def test_national_operations_are_in_the_capability_statement(app_client, name, level):
    rest = app_client.get("/fhir/metadata").json()["rest"][0]
    ops = rest["operation"] if level is None else next(r for r in rest["resource"] if r["type"] == level)["operation"]
    assert any(o["name"] == name and o["definition"].startswith("https://fhir-server.id/OperationDefinition/") for o in ops)
