"""Duplicate review: the scan (service and CLI), GET Patient/$duplicates and POST
Patient/$not-duplicate, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import json

import orjson
import pytest
from typer.testing import CliRunner

from fhir_server.cli import app as cli
from fhir_server.service.mpi_scan import DuplicateScan
from tests.mpi.helpers import SITI, SITI_NIK, patient

JSON = {"Content-Type": "application/fhir+json"}


def create(client, resource) -> str:
    r = client.post("/fhir/Patient", content=orjson.dumps(resource), headers=JSON)
    assert r.status_code == 201, r.text
    return r.json()["id"]


@pytest.fixture
def people(client):
    return {
        "siti": create(client, SITI),
        "siti2": create(client, patient("SITI AMINAH", nik=SITI_NIK, birth="1990-06-05", gender="female")),
        "siti3": create(
            client, patient("Siti Aminah", birth="1990-05-06", gender="female", phone="+62 812-0000-0001", village="3204152003")
        ),
        "baby": create(client, patient("By. Ny. Siti Aminah", ibu=SITI_NIK, birth="2024-03-01", gender="male", village="3204152003")),
        "other": create(client, patient("Bambang Sutrisno", nik="3204150101700001", birth="1970-01-01", gender="male")),
    }


def pairs(client, **params):
    r = client.get("/fhir/Patient/$duplicates", params=params)
    assert r.status_code == 200, r.text
    out = []
    for p in r.json().get("parameter", []):
        if p["name"] != "pair":
            continue
        parts = {}
        for part in p["part"]:
            value = next(v for k, v in part.items() if k.startswith("value"))
            parts.setdefault(part["name"], []).append(value)
        a, b = parts["patient-a"][0]["reference"].split("/")[1], parts["patient-b"][0]["reference"].split("/")[1]
        out.append(
            {
                "ids": {a, b},
                "grade": parts["grade"][0],
                "score": parts["score"][0],
                "reasons": parts["reason"],
                "status": parts["status"][0],
            }
        )
    return out


def test_the_scan_records_pairs_that_duplicates_lists_best_first(client, people):
    summary = DuplicateScan(client.app.state.fhir.db).run()
    assert summary.scanned == summary.total == 5
    found = pairs(client)
    ids = [p["ids"] for p in found]
    assert {people["siti"], people["siti2"]} in ids
    assert {people["siti"], people["siti3"]} in ids
    assert all(people["other"] not in p for p in ids)
    assert [p["score"] for p in found] == sorted((p["score"] for p in found), reverse=True)
    certain = next(p for p in found if p["ids"] == {people["siti"], people["siti2"]})
    assert certain["grade"] == "certain" and any("NIK identical" in r for r in certain["reasons"])
    baby = [p for p in found if people["baby"] in p["ids"]]
    assert all(p["grade"] == "possible" for p in baby)
    assert [p["ids"] for p in pairs(client, grade="certain")] == [{people["siti"], people["siti2"]}]


def test_not_the_same_person_never_comes_back(client, people):
    scan = DuplicateScan(client.app.state.fhir.db)
    scan.run()
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "patient-a", "valueReference": {"reference": f"Patient/{people['siti3']}"}},
            {"name": "patient-b", "valueReference": {"reference": f"Patient/{people['siti']}"}},
        ],
    }
    r = client.post("/fhir/Patient/$not-duplicate", content=orjson.dumps(body), headers=JSON)
    assert r.status_code == 200, r.text
    assert {people["siti"], people["siti3"]} not in [p["ids"] for p in pairs(client)]
    assert {people["siti"], people["siti3"]} in [p["ids"] for p in pairs(client, status="not-duplicate")]
    DuplicateScan(client.app.state.fhir.db).run(restart=True)
    assert {people["siti"], people["siti3"]} not in [p["ids"] for p in pairs(client)]


def test_a_merge_closes_its_pair(client, people):
    DuplicateScan(client.app.state.fhir.db).run()
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "source-patient", "valueReference": {"reference": f"Patient/{people['siti2']}"}},
            {"name": "target-patient", "valueReference": {"reference": f"Patient/{people['siti']}"}},
        ],
    }
    assert client.post("/fhir/Patient/$merge", content=orjson.dumps(body), headers=JSON).status_code == 200
    assert {people["siti"], people["siti2"]} in [p["ids"] for p in pairs(client, status="merged")]
    assert {people["siti"], people["siti2"]} not in [p["ids"] for p in pairs(client)]
    unmerge = {
        "resourceType": "Parameters",
        "parameter": [{"name": "source-patient", "valueReference": {"reference": f"Patient/{people['siti2']}"}}],
    }
    assert client.post("/fhir/Patient/$unmerge", content=orjson.dumps(unmerge), headers=JSON).status_code == 200
    assert {people["siti"], people["siti2"]} in [p["ids"] for p in pairs(client)]  # back in review


def test_an_interrupted_scan_resumes_from_its_checkpoint(client, people):
    db = client.app.state.fhir.db

    class Stop(Exception):
        pass

    def stop_after_first(_pair):
        raise Stop

    scan = DuplicateScan(db, batch_size=2)
    with pytest.raises(Stop):
        scan.run(sink=stop_after_first)  # the first batch (siti, siti2) has a pair: its checkpoint is committed first
    resumed = DuplicateScan(db, batch_size=2).run()
    assert resumed.resumed_from == 2
    assert resumed.scanned == 5
    ids = [p["ids"] for p in pairs(client)]
    assert {people["siti"], people["siti2"]} in ids and {people["siti"], people["siti3"]} in ids


def test_duplicates_pages_with_next_offset(client, people):
    DuplicateScan(client.app.state.fhir.db).run()
    r = client.get("/fhir/Patient/$duplicates", params={"_count": "1"}).json()["parameter"]
    assert [p["name"] for p in r] == ["pair", "next-offset"]
    assert r[1]["valueInteger"] == 1


@pytest.mark.parametrize("params", [{"status": "maybe"}, {"grade": "sure"}, {"_count": "0"}, {"_offset": "x"}])
def test_bad_review_parameters_are_400(client, params):
    assert client.get("/fhir/Patient/$duplicates", params=params).status_code == 400


def test_not_duplicate_needs_two_existing_patients(client, people):
    def post(a, b):
        body = {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "patient-a", "valueReference": {"reference": a}},
                {"name": "patient-b", "valueReference": {"reference": b}},
            ],
        }
        return client.post("/fhir/Patient/$not-duplicate", content=orjson.dumps(body), headers=JSON)

    assert post(f"Patient/{people['siti']}", "Patient/nope").status_code == 404
    assert post(f"Patient/{people['siti']}", f"Patient/{people['siti']}").status_code == 400
    assert post("Observation/1", f"Patient/{people['siti']}").status_code == 400


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_cli_scan_writes_json_or_csv_and_resumes(client, people, backend_url, tmp_path, fmt):
    out = tmp_path / f"pairs.{fmt}"
    result = CliRunner().invoke(cli, ["mpi", "scan", "--database-url", backend_url, "-o", str(out), "--format", fmt, "--restart"])
    assert result.exit_code == 0, result.output
    assert "scanned 5 of 5 Patients" in result.output
    if fmt == "csv":
        rows = list(csv.DictReader(out.open(encoding="utf-8")))
        pairs_found = [{r["patient_a"], r["patient_b"]} for r in rows]
        assert set(rows[0]) == {"patient_a", "patient_b", "grade", "score", "reasons"}
    else:
        records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
        pairs_found = [{r["patient_a"], r["patient_b"]} for r in records]
    assert {people["siti"], people["siti2"]} in pairs_found
    again = CliRunner().invoke(cli, ["mpi", "scan", "--database-url", backend_url])
    assert again.exit_code == 0 and "scanned 5 of 5" in again.output
