"""fhir-server import / export: NDJSON, Bundles, directories, .gz; idempotent; errors with file and line."""

from __future__ import annotations

import gzip
import json

import orjson
import pytest
from typer.testing import CliRunner

from fhir_server.cli import app
from tests.conftest import BACKENDS

runner = CliRunner()
AMB = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}


def _files(tmp_path):
    src = tmp_path / "in"
    (src / "nested").mkdir(parents=True)
    lines = [
        orjson.dumps({"resourceType": "Patient", "id": "p1", "gender": "female"}),
        b"",
        orjson.dumps({"resourceType": "Patient", "gender": "male", "birthDate": "1980-01-01"}),
        b'{"resourceType": "Patient", "gender": "boy"}',
        b"{not json",
    ]
    (src / "patients.ndjson").write_bytes(b"\n".join(lines) + b"\n")
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:11111111-1111-4111-8111-111111111111",
                "resource": {"resourceType": "Patient", "gender": "female"},
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "fullUrl": "urn:uuid:22222222-2222-4222-8222-222222222222",
                "resource": {
                    "resourceType": "Encounter",
                    "status": "finished",
                    "class": AMB,
                    "subject": {"reference": "urn:uuid:11111111-1111-4111-8111-111111111111"},
                },
                "request": {"method": "POST", "url": "Encounter"},
            },
        ],
    }
    (src / "nested" / "visit.json").write_bytes(orjson.dumps(bundle))
    (src / "nested" / "orgs.ndjson.gz").write_bytes(gzip.compress(orjson.dumps({"resourceType": "Organization", "name": "RSUD"}) + b"\n"))
    return src


@pytest.mark.parametrize("fresh_database_url", BACKENDS, indirect=True)
def test_import_is_idempotent_and_reports_bad_lines(fresh_database_url, tmp_path):
    src = _files(tmp_path)
    first = runner.invoke(app, ["import", str(src), "--database-url", fresh_database_url, "--batch-size", "2"])
    assert first.exit_code == 1, first.output  # two bad lines
    assert "5 created, 0 existing, 2 errors" in first.stdout
    assert f"{src / 'patients.ndjson'}:4" in first.stderr and f"{src / 'patients.ndjson'}:5" in first.stderr
    again = runner.invoke(app, ["import", str(src), "--database-url", fresh_database_url])
    assert "0 created, 5 existing, 2 errors" in again.stdout

    out = tmp_path / "out"
    exported = runner.invoke(app, ["export", str(out), "--database-url", fresh_database_url, "--type", "Patient", "--type", "Encounter"])
    assert exported.exit_code == 0, exported.output
    patients = [json.loads(x) for x in (out / "Patient.ndjson").read_text().splitlines()]
    assert len(patients) == 3 and all(p["meta"]["versionId"] == "1" for p in patients)
    encounter = json.loads((out / "Encounter.ndjson").read_text())
    assert encounter["subject"]["reference"] == "Patient/11111111-1111-4111-8111-111111111111"
    assert not (out / "Organization.ndjson").exists()
