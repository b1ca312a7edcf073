"""FHIR_MPI_FLAG_DUPLICATES: every Patient write (REST and the Dukcapil import) records its likely
duplicates for review, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient

from fhir_server.app import create_app
from fhir_server.config import Settings
from tests.conftest import BACKENDS, database
from tests.mpi.helpers import patient

pytestmark = pytest.mark.slow  # an app per backend on a fresh database

JSON = {"Content-Type": "application/fhir+json"}
FIXTURE = Path(__file__).resolve().parents[1] / "mappings" / "fixtures" / "dukcapil_call_nik.json"


@pytest.fixture(scope="module", params=BACKENDS)
def flagging(request, tmp_path_factory) -> Iterator[TestClient]:
    with database(request.param, tmp_path_factory.mktemp("mpi-flag")) as url:
        app = create_app(Settings(database_url=url, base_url="http://testserver/fhir", mpi_flag_duplicates=True))
        with TestClient(app) as c:
            yield c


def listed(client) -> list[set[str]]:
    params = client.get("/fhir/Patient/$duplicates").json().get("parameter", [])
    return [{part["valueReference"]["reference"].split("/")[1] for part in p["part"][:2]} for p in params if p["name"] == "pair"]


def test_a_dukcapil_import_and_a_rest_create_are_flagged(flagging):
    existing = flagging.post(
        "/fhir/Patient",
        content=orjson.dumps(patient("Siti Rahayu", birth="1990-06-05", gender="female", village="3204152003")),
        headers=JSON,
    ).json()["id"]
    r = flagging.post("/fhir/Patient/$import-dukcapil", content=FIXTURE.read_bytes(), headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    imported = r.json()["entry"][0]["response"]["location"].split("/")[1]
    assert {existing, imported} in listed(flagging)
    again = flagging.post(
        "/fhir/Patient",
        content=orjson.dumps(patient("SITI RAHAYU", nik="3204154506900003", birth="1990-06-05", gender="female")),
        headers=JSON,
    ).json()["id"]
    assert {again, imported} in listed(flagging)
    stranger = flagging.post("/fhir/Patient", content=orjson.dumps(patient("Bambang", birth="1970-01-01", gender="male")), headers=JSON)
    assert all(stranger.json()["id"] not in pair for pair in listed(flagging))
