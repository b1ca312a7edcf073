"""The MPI's doors in token mode (FHIR_AUTH=token): a token lacking the scopes gets 403."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest
from fastapi.testclient import TestClient

from fhir_server.app import create_app
from fhir_server.config import Settings
from tests.conftest import BACKENDS, database
from tests.mpi.helpers import SITI, SITI_NIK, parameters, patient
from tests.security.test_token_auth_http import auth, token_for

pytestmark = pytest.mark.slow  # an app per backend on a fresh database (migrations and seeding)


@pytest.fixture(scope="module", params=BACKENDS)
def secured(request, tmp_path_factory) -> Iterator[TestClient]:
    with database(request.param, tmp_path_factory.mktemp("mpi-token")) as url:
        app = create_app(Settings(database_url=url, auth="token", base_url="http://testserver/fhir"))
        with TestClient(app) as c:
            writer = token_for(c, "system/*.cruds")
            assert c.post("/fhir/Patient", content=orjson.dumps(SITI), headers=auth(writer)).status_code == 201
            yield c


QUERY = parameters(patient("Siti Aminah", nik=SITI_NIK, birth="1990-06-05", gender="female"))


@pytest.mark.parametrize("scopes", ["system/Patient.r", "system/Patient.s", "system/Encounter.rs", "system/Patient.c"])
def test_match_needs_read_and_search_on_patient(secured, scopes):
    token = token_for(secured, scopes)
    r = secured.post("/fhir/Patient/$match", content=orjson.dumps(QUERY), headers=auth(token))
    assert r.status_code == 403, r.text
    assert r.json()["issue"][0]["code"] == "forbidden"
    get = secured.get("/fhir/Patient/$match", params={"name": "Siti Aminah", "birthdate": "1990-06-05"}, headers=auth(token))
    assert get.status_code == 403


def test_match_without_a_token_is_401(secured):
    r = secured.post("/fhir/Patient/$match", content=orjson.dumps(QUERY), headers={"Content-Type": "application/fhir+json"})
    assert r.status_code == 401


def test_match_with_patient_read_and_search_answers(secured):
    token = token_for(secured, "system/Patient.rs")
    r = secured.post("/fhir/Patient/$match", content=orjson.dumps(QUERY), headers=auth(token))
    assert r.status_code == 200, r.text
    assert r.json()["entry"][0]["search"]["score"] > 0.99


def _merge_pair(secured, writer: str) -> tuple[str, str, str]:
    a = secured.post(
        "/fhir/Patient", content=orjson.dumps(patient("Siti Aminah", birth="1990-06-05", gender="female")), headers=auth(writer)
    )
    b = secured.post(
        "/fhir/Patient", content=orjson.dumps(patient("SITI AMINAH", birth="1990-06-05", gender="female")), headers=auth(writer)
    )
    source, target = a.json()["id"], b.json()["id"]
    enc = {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"}, "subject": {"reference": f"Patient/{source}"}}
    e = secured.post("/fhir/Encounter", content=orjson.dumps(enc), headers=auth(writer))
    return source, target, e.json()["id"]


def _merge_body(source: str, target: str) -> bytes:
    return orjson.dumps(
        {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "source-patient", "valueReference": {"reference": f"Patient/{source}"}},
                {"name": "target-patient", "valueReference": {"reference": f"Patient/{target}"}},
            ],
        }
    )


@pytest.mark.parametrize(
    "scopes",
    [
        "system/Patient.rs",  # no update on Patient
        "system/Patient.rus system/Provenance.c",  # no update on the Encounter that refers to the source
        "system/Patient.rus system/Encounter.u",  # cannot write the Provenance
    ],
)
def test_merge_needs_update_on_every_type_it_writes(secured, scopes):
    writer = token_for(secured, "system/*.cruds")
    source, target, encounter = _merge_pair(secured, writer)
    r = secured.post("/fhir/Patient/$merge", content=_merge_body(source, target), headers=auth(token_for(secured, scopes)))
    assert r.status_code == 403, r.text
    assert secured.get(f"/fhir/Patient/{source}", headers=auth(writer)).json()["meta"]["versionId"] == "1"
    assert secured.get(f"/fhir/Encounter/{encounter}", headers=auth(writer)).json()["subject"]["reference"] == f"Patient/{source}"


def test_merge_with_the_needed_scopes_answers(secured):
    writer = token_for(secured, "system/*.cruds")
    source, target, encounter = _merge_pair(secured, writer)
    token = token_for(secured, "system/Patient.rus system/Encounter.u system/Provenance.c")
    r = secured.post("/fhir/Patient/$merge", content=_merge_body(source, target), headers=auth(token))
    assert r.status_code == 200, r.text
    assert secured.get(f"/fhir/Encounter/{encounter}", headers=auth(writer)).json()["subject"]["reference"] == f"Patient/{target}"
    denied = secured.post(
        "/fhir/Patient/$unmerge",
        content=orjson.dumps(
            {"resourceType": "Parameters", "parameter": [{"name": "source-patient", "valueReference": {"reference": f"Patient/{source}"}}]}
        ),
        headers=auth(token_for(secured, "system/Patient.rs")),
    )
    assert denied.status_code == 403


def test_duplicate_review_needs_its_scopes(secured):
    assert secured.get("/fhir/Patient/$duplicates", headers=auth(token_for(secured, "system/Encounter.rs"))).status_code == 403
    assert secured.get("/fhir/Patient/$duplicates", headers=auth(token_for(secured, "system/Patient.rs"))).status_code == 200
    writer = token_for(secured, "system/*.cruds")
    source, target, _ = _merge_pair(secured, writer)
    body = orjson.dumps(
        {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "patient-a", "valueReference": {"reference": f"Patient/{source}"}},
                {"name": "patient-b", "valueReference": {"reference": f"Patient/{target}"}},
            ],
        }
    )
    assert (
        secured.post("/fhir/Patient/$not-duplicate", content=body, headers=auth(token_for(secured, "system/Patient.rs"))).status_code == 403
    )
    assert (
        secured.post("/fhir/Patient/$not-duplicate", content=body, headers=auth(token_for(secured, "system/Patient.ru"))).status_code == 200
    )
