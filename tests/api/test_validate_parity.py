"""``$validate`` runs exactly what a write runs (structure, model, bindings, SATUSEHAT
administrativeCode per FHIR_REGION_CODES): it never says valid for what POST refuses, and
says what POST would warn about. Also at the system level, with a Parameters body."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest
from fastapi.testclient import TestClient

from fhir_server.app import create_app
from fhir_server.config import Settings
from terminology.urls import SATUSEHAT_ADMINISTRATIVE_CODE
from tests.conftest import database

FHIR_JSON = {"Content-Type": "application/fhir+json"}


def _patient(city: str) -> dict:
    parts = {"province": "32", "city": city}
    return {
        "resourceType": "Patient",
        "gender": "female",
        "address": [
            {
                "use": "home",
                "extension": [{"url": SATUSEHAT_ADMINISTRATIVE_CODE, "extension": [{"url": k, "valueCode": v} for k, v in parts.items()]}],
            }
        ],
    }


UNKNOWN_CITY = _patient("3299")  # well-formed, but no such city in province 32
DOTTED = _patient("32.04")  # malformed: always an error


@pytest.fixture(params=["strict", "warn", "off"])
def regional(request, tmp_path) -> Iterator[TestClient]:
    with database("sqlite", tmp_path) as url, TestClient(create_app(Settings(database_url=url, region_codes=request.param))) as c:
        yield c


def _severities(outcome: dict) -> list[str]:
    return sorted(i["severity"] for i in outcome["issue"] if i["severity"] in ("error", "fatal", "warning"))


@pytest.mark.parametrize("resource", [UNKNOWN_CITY, DOTTED], ids=["unknown-city", "dotted"])
def test_validate_and_create_agree_in_every_region_codes_mode(regional, resource):
    created = regional.post("/fhir/Patient", content=orjson.dumps(resource), headers={**FHIR_JSON, "Prefer": "return=OperationOutcome"})
    checked = regional.post("/fhir/Patient/$validate", content=orjson.dumps(resource), headers=FHIR_JSON)
    assert checked.status_code == 200
    verdict = _severities(checked.json())
    if created.status_code >= 400:
        assert created.status_code in (400, 422)
        assert "error" in verdict  # never "valid" for what a create refuses
        assert {i["diagnostics"] for i in created.json()["issue"]} <= {i.get("diagnostics") for i in checked.json()["issue"]}
    else:
        assert created.status_code == 201 and "error" not in verdict
        assert _severities(created.json()) == verdict  # the same warnings


def test_strict_region_codes_refuse_an_unknown_city_in_both(regional):
    mode = regional.app.state.fhir.settings.region_codes
    created = regional.post("/fhir/Patient", content=orjson.dumps(UNKNOWN_CITY), headers=FHIR_JSON)
    checked = regional.post("/fhir/Patient/$validate", content=orjson.dumps(UNKNOWN_CITY), headers=FHIR_JSON).json()
    expected = {"strict": (422, ["error"]), "warn": (201, ["warning"]), "off": (201, [])}[mode]
    assert (created.status_code, _severities(checked)) == expected


def test_system_level_validate_takes_a_parameters_body(client):
    body = {"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": {**DOTTED}}]}
    r = client.post("/fhir/$validate", content=orjson.dumps(body), headers=FHIR_JSON)
    assert r.status_code == 200 and "error" in _severities(r.json())
    ok = {"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": {"resourceType": "Patient", "gender": "male"}}]}
    r = client.post("/fhir/$validate", content=orjson.dumps(ok), headers=FHIR_JSON)
    assert r.status_code == 200 and "error" not in _severities(r.json())
    unknown = {"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": {"resourceType": "Nope"}}]}
    assert client.post("/fhir/$validate", content=orjson.dumps(unknown), headers=FHIR_JSON).status_code == 400
    empty = {"resourceType": "Parameters", "parameter": [{"name": "mode", "valueCode": "create"}]}
    assert client.post("/fhir/$validate", content=orjson.dumps(empty), headers=FHIR_JSON).status_code == 400


def test_system_level_validate_is_in_the_capability_statement_with_its_own_definition(tmp_path):
    with database("sqlite", tmp_path) as url, TestClient(create_app(Settings(database_url=url))) as fresh:
        rest = fresh.get("/fhir/metadata").json()["rest"][0]
        [validate] = [o for o in rest["operation"] if o["name"] == "validate"]
        definition = fresh.get("/fhir/OperationDefinition/validate").json()
    assert validate["definition"] == "https://fhir-server.id/OperationDefinition/validate"
    assert definition["system"] is True and definition["base"] == "http://hl7.org/fhir/OperationDefinition/Resource-validate"
