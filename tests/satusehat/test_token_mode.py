"""The SATUSEHAT operations in token mode: a dedicated scope (system/satusehat.read for the status,
system/satusehat.write to retry), which no wildcard grants; a token lacking it gets 403."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from fhir_server.app import create_app
from fhir_server.auth.clients import add_client
from fhir_server.auth.scopes import ScopeSet, narrow, validate_client_scopes
from tests.conftest import BACKENDS, database
from tests.satusehat.conftest import settings
from tests.satusehat.simulator import Simulator

pytestmark = pytest.mark.slow  # a fresh app in token mode per backend


@pytest.fixture(params=BACKENDS)
def secured(request, tmp_path, sim_session: Simulator) -> Iterator[TestClient]:
    with database(request.param, tmp_path) as url, TestClient(create_app(settings(url, sim_session.url, auth="token"))) as c:
        yield c


def token(client: TestClient, scopes: str) -> dict[str, str]:
    with client.app.state.fhir.db.write() as conn:
        cid, secret = add_client(conn, name="SIMRS", scopes=scopes)
    r = client.post(
        "/fhir/auth/token", data={"grant_type": "client_credentials", "client_id": cid, "client_secret": secret, "scope": scopes}
    )
    assert r.status_code == 200, r.text
    assert r.json()["scope"].split() == scopes.split() or set(r.json()["scope"].split()) == set(scopes.split())
    return {"Authorization": f"Bearer {r.json()['access_token']}", "Content-Type": "application/fhir+json"}


def test_the_operations_need_their_dedicated_scope(secured):
    everything = token(secured, "system/*.cruds")
    loc = {"resourceType": "Location", "id": "l1", "name": "Poli", "position": {"latitude": 1, "longitude": 2}}
    assert secured.put("/fhir/Location/l1", json=loc, headers=everything).status_code == 201
    # a wildcard does not cover the feature scope
    for path in ("/fhir/Location/l1/$satusehat-status", "/fhir/$satusehat-status"):
        r = secured.get(path, headers=everything)
        assert r.status_code == 403, r.text
        assert "system/satusehat.read" in r.text
    assert secured.post("/fhir/Location/l1/$satusehat-sync", headers=everything).status_code == 403
    reader = token(secured, "system/*.rs system/satusehat.read")
    assert secured.get("/fhir/Location/l1/$satusehat-status", headers=reader).status_code == 200
    assert secured.get("/fhir/$satusehat-status", headers=reader).status_code == 200
    r = secured.post("/fhir/Location/l1/$satusehat-sync", headers=reader)
    assert r.status_code == 403 and "system/satusehat.write" in r.text
    # the feature scope alone is not read on the type
    only = token(secured, "system/satusehat.read system/satusehat.write")
    assert secured.get("/fhir/Location/l1/$satusehat-status", headers=only).status_code == 403
    writer = token(secured, "system/Location.rs system/satusehat.write")
    assert secured.post("/fhir/Location/l1/$satusehat-sync", headers=writer).status_code in (200, 409)
    assert secured.get("/fhir/Location/l1/$satusehat-status").status_code == 401


def test_feature_scopes_parse_register_and_narrow():
    assert validate_client_scopes("system/Patient.rs system/satusehat.read") == ["system/Patient.rs", "system/satusehat.read"]
    held = ScopeSet.parse("system/*.rs system/satusehat.read")
    assert held.has_feature("system/satusehat.read") and not held.has_feature("system/satusehat.write")
    assert narrow("system/satusehat.read system/satusehat.write", held) == ["system/satusehat.read"]
    assert "system/satusehat.read" in narrow(None, held)
    assert not ScopeSet.parse("system/*.*").has_feature("system/satusehat.read")
