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
