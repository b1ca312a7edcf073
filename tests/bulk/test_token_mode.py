"""$export with FHIR_AUTH=token: scopes decide what may be exported; only the client that
started a job can poll, cancel or download it; the manifest requires the access token."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from fhir_server.app import create_app
from fhir_server.bulk.worker import ExportWorker
from tests.bulk.conftest import ASYNC, BulkSettings, install_bulk_routes, wait_done
from tests.conftest import BACKENDS, database
from tests.security.test_token_auth_http import token_for


@pytest.fixture(params=BACKENDS)
def secured(request, tmp_path) -> Iterator[TestClient]:
    with database(request.param, tmp_path) as url:
        settings = BulkSettings(database_url=url, auth="token", base_url="http://testserver/fhir",
                                export_dir=str(tmp_path / "export"))
        app = create_app(settings)
        install_bulk_routes(app)
        with TestClient(app) as client:
            worker = ExportWorker(app.state.fhir.db, tmp_path / "export", poll_interval=0.05, owner="w").start()
            try:
                yield client
            finally:
                worker.stop()


def _h(token: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **extra}


def test_jobs_belong_to_their_client_and_scopes_limit_the_export(secured):
    owner = token_for(secured, "system/*.cruds")
    other = token_for(secured, "system/*.rs")
    patients_only = token_for(secured, "system/Patient.rs")
    pid = secured.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=_h(owner)).json()["id"]
    assert secured.post("/fhir/Observation", headers=_h(owner), json={
        "resourceType": "Observation", "status": "final", "code": {"text": "x"},
        "subject": {"reference": f"Patient/{pid}"}}).status_code == 201

    assert secured.get("/fhir/$export", headers=ASYNC).status_code == 401
    resp = secured.get("/fhir/Patient/$export", headers=_h(owner, **ASYNC))
    assert resp.status_code == 202, resp.text
    location = resp.headers["Content-Location"]
    assert secured.get(location).status_code == 401
    assert secured.get(location, headers=_h(other)).status_code == 404
    done = wait_done(_Auth(secured, owner), location)
    assert done.status_code == 200
    manifest = done.json()
    assert manifest["requiresAccessToken"] is True
    assert {o["type"] for o in manifest["output"]} == {"Patient", "Observation"}
    url = manifest["output"][0]["url"]
    assert secured.get(url).status_code == 401
    assert secured.get(url, headers=_h(other)).status_code == 404
    assert secured.get(url, headers=_h(owner)).status_code == 200
    assert secured.delete(location, headers=_h(other)).status_code == 404

    # a token that reads only Patients: no system-level export, Patient level has Patients only
    assert secured.get("/fhir/$export", headers=_h(patients_only, **ASYNC)).status_code == 403
    assert secured.get("/fhir/Patient/$export", params={"_type": "Observation"},
                       headers=_h(patients_only, **ASYNC)).status_code == 403
    resp = secured.get("/fhir/Patient/$export", headers=_h(patients_only, **ASYNC))
    assert resp.status_code == 202
    done = wait_done(_Auth(secured, patients_only), resp.headers["Content-Location"])
    assert [o["type"] for o in done.json()["output"]] == ["Patient"]


class _Auth:
    """A client that sends the token on every GET (for wait_done)."""

    def __init__(self, client: TestClient, token: str) -> None:
        self.client, self.token = client, token

    def get(self, url: str):
        return self.client.get(url, headers=_h(self.token))
