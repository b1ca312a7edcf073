"""$export with FHIR_AUTH=token: scopes decide what may be exported; only the client that
started a job can poll, cancel or download it; the manifest requires the access token; the
requesting token's scopes decide which files the manifest lists and which may be downloaded."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from fhir_server.app import create_app
from fhir_server.auth.clients import add_client
from fhir_server.bulk import jobs
from fhir_server.bulk.worker import ExportWorker
from tests.bulk.conftest import ASYNC, BulkSettings, install_bulk_routes, wait_done
from tests.conftest import BACKENDS, database
from tests.security.test_token_auth_http import token_for


@pytest.fixture(params=BACKENDS)
def secured(request, tmp_path) -> Iterator[TestClient]:
    with database(request.param, tmp_path) as url:
        settings = BulkSettings(database_url=url, auth="token", base_url="http://testserver/fhir", export_dir=str(tmp_path / "export"))
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
    assert (
        secured.post(
            "/fhir/Observation",
            headers=_h(owner),
            json={"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": f"Patient/{pid}"}},
        ).status_code
        == 201
    )

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
    assert secured.get("/fhir/Patient/$export", params={"_type": "Observation"}, headers=_h(patients_only, **ASYNC)).status_code == 403
    resp = secured.get("/fhir/Patient/$export", headers=_h(patients_only, **ASYNC))
    assert resp.status_code == 202
    done = wait_done(_Auth(secured, patients_only), resp.headers["Content-Location"])
    assert [o["type"] for o in done.json()["output"]] == ["Patient"]


def _tokens(client: TestClient, registered: str, *requested: str) -> list[str]:
    """Tokens of one client (registered with ``registered``), one per requested scope string."""
    with client.app.state.fhir.db.write() as conn:
        cid, secret = add_client(conn, name="Bulk client", scopes=registered)
    tokens = []
    for scope in requested:
        r = client.post(
            "/fhir/auth/token", data={"grant_type": "client_credentials", "client_id": cid, "client_secret": secret, "scope": scope}
        )
        assert r.status_code == 200, r.text
        tokens.append(r.json()["access_token"])
    return tokens


def _forbidden(resp) -> bool:
    body = resp.json()
    return resp.status_code == 403 and body["resourceType"] == "OperationOutcome" and body["issue"][0]["code"] == "forbidden"


def _store_patient_data(client: TestClient, token: str) -> None:
    pid = client.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=_h(token)).json()["id"]
    subject = {"reference": f"Patient/{pid}"}
    for resource in (
        {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": subject},
        {
            "resourceType": "Encounter",
            "status": "finished",
            "subject": subject,
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        },
    ):
        assert client.post(f"/fhir/{resource['resourceType']}", json=resource, headers=_h(token)).status_code == 201


def test_the_requesting_tokens_scopes_decide_which_files_it_sees_and_downloads(secured):
    full, observations, search_only = _tokens(
        secured, "system/*.cruds", "system/*.cruds", "system/Observation.rs", "system/Patient.s system/Observation.s"
    )
    _store_patient_data(secured, full)
    resp = secured.get("/fhir/Patient/$export", params={"_type": "Patient,Observation"}, headers=_h(full, **ASYNC))
    assert resp.status_code == 202, resp.text
    location = resp.headers["Content-Location"]
    done = wait_done(_Auth(secured, full), location)
    urls = {o["type"]: o["url"] for o in done.json()["output"]}
    assert set(urls) == {"Patient", "Observation"}

    # the same client with a token that reads Observations only: the manifest lists only their
    # file, and the Patient file is forbidden although the job is the client's own
    listed = secured.get(location, headers=_h(observations))
    assert listed.status_code == 200 and [o["type"] for o in listed.json()["output"]] == ["Observation"]
    assert _forbidden(secured.get(urls["Patient"], headers=_h(observations)))
    obs = secured.get(urls["Observation"], headers=_h(observations))
    assert obs.status_code == 200 and obs.text.count("\n") == 1
    # search is not read
    assert secured.get(location, headers=_h(search_only)).json()["output"] == []
    assert _forbidden(secured.get(urls["Patient"], headers=_h(search_only)))
    # the same 403 whether or not the job has such a file; a name that is no type stays 404
    folder = urls["Patient"].rsplit("/", 1)[0]
    assert _forbidden(secured.get(f"{folder}/Encounter.ndjson", headers=_h(observations)))
    assert secured.get(f"{folder}/NoSuchType.ndjson", headers=_h(observations)).status_code == 404
    assert secured.get(urls["Patient"], headers=_h(full)).status_code == 200
    # a HEAD (answered from the file's size, the file unread) is refused as its GET
    head = secured.head(urls["Patient"], headers=_h(observations))
    assert head.status_code == 403 and head.content == b"" and "insufficient_scope" in head.headers["www-authenticate"]
    assert secured.head(urls["Patient"]).status_code == 401
    assert secured.head(urls["Patient"], headers=_h(full)).status_code == 200


def test_a_kickoff_exports_only_the_types_the_token_may_export(secured):
    full, some, obs_read_only, read_only, audit = _tokens(
        secured,
        "system/*.cruds system/AuditEvent.rs",
        "system/*.cruds",
        "system/Patient.rs system/Encounter.rs",
        "system/Patient.rs system/Observation.r",
        "system/Patient.r",
        "system/*.rs system/AuditEvent.rs",
    )
    _store_patient_data(secured, full)

    # system level: "every type" needs a wildcard; a narrower token names its types
    assert _forbidden(secured.get("/fhir/$export", headers=_h(some, **ASYNC)))
    resp = secured.get("/fhir/$export", params={"_type": "Patient,Encounter"}, headers=_h(some, **ASYNC))
    done = wait_done(_Auth(secured, some), resp.headers["Content-Location"])
    assert sorted(o["type"] for o in done.json()["output"]) == ["Encounter", "Patient"]

    # Patient level without _type: the compartment types the token may export
    resp = secured.get("/fhir/Patient/$export", headers=_h(some, **ASYNC))
    done = wait_done(_Auth(secured, some), resp.headers["Content-Location"])
    assert sorted(o["type"] for o in done.json()["output"]) == ["Encounter", "Patient"]
    # export needs read and search, with _type as without: Observation.r alone does not export Observations
    resp = secured.get("/fhir/Patient/$export", headers=_h(obs_read_only, **ASYNC))
    done = wait_done(_Auth(secured, obs_read_only), resp.headers["Content-Location"])
    assert [o["type"] for o in done.json()["output"]] == ["Patient"]
    assert _forbidden(secured.get("/fhir/Patient/$export", params={"_type": "Observation"}, headers=_h(obs_read_only, **ASYNC)))

    # nothing the token may export: 403 at every level
    for url in ("/fhir/$export", "/fhir/Patient/$export"):
        assert _forbidden(secured.get(url, headers=_h(read_only, **ASYNC)))

    # a wildcard never covers AuditEvent: the job of a system/*.cruds token leaves it out
    db = secured.app.state.fhir.db
    for token, has_audit in ((full, False), (audit, True)):
        resp = secured.get("/fhir/$export", headers=_h(token, **ASYNC))
        assert resp.status_code == 202, resp.text
        job = jobs.get_job(db, resp.headers["Content-Location"].rsplit("/", 1)[1])
        assert job is not None and job.types is not None
        assert ("AuditEvent" in job.types) is has_audit and {"Patient", "Observation"} <= set(job.types)


class _Auth:
    """A client that sends the token on every GET (for wait_done)."""

    def __init__(self, client: TestClient, token: str) -> None:
        self.client, self.token = client, token

    def get(self, url: str):
        return self.client.get(url, headers=_h(self.token))


def test_kickoff_options_need_the_scopes_of_what_they_reveal_or_export(secured):
    full, group_obs, no_provenance = _tokens(
        secured,
        "system/*.cruds",
        "system/*.cruds",
        "system/Group.rs system/Observation.rs",
        "system/Patient.rs system/Observation.rs",
    )
    _store_patient_data(secured, full)
    pid = secured.get("/fhir/Patient", headers=_h(full)).json()["entry"][0]["resource"]["id"]
    member = {"entity": {"reference": f"Patient/{pid}"}}
    group = secured.post(
        "/fhir/Group", headers=_h(full), json={"resourceType": "Group", "type": "person", "actual": True, "member": [member]}
    )
    group_id = group.json()["id"]
    patient_param = {"resourceType": "Parameters", "parameter": [{"name": "patient", "valueReference": {"reference": f"Patient/{pid}"}}]}

    # patient: whether a Patient exists (or is in the Group) is a Patient search: a token that may
    # not export Patients cannot ask (the same 403 whether or not the patient exists)
    for ref in (f"Patient/{pid}", "Patient/no-such-patient"):
        body = {"resourceType": "Parameters", "parameter": [{"name": "patient", "valueReference": {"reference": ref}}]}
        assert _forbidden(secured.post(f"/fhir/Group/{group_id}/$export", json=body, headers=_h(group_obs, **ASYNC)))
    assert secured.post(f"/fhir/Group/{group_id}/$export", headers=_h(group_obs, **ASYNC)).status_code == 202  # without it: fine
    resp = secured.post(f"/fhir/Group/{group_id}/$export", json=patient_param, headers=_h(full, **ASYNC))
    assert resp.status_code == 202, resp.text

    # includeAssociatedData adds Provenance to the export: it needs export on Provenance
    params = {"_type": "Observation", "includeAssociatedData": "RelevantProvenanceResources"}
    assert _forbidden(secured.get("/fhir/Patient/$export", params=params, headers=_h(no_provenance, **ASYNC)))
    assert secured.get("/fhir/Patient/$export", params=params, headers=_h(full, **ASYNC)).status_code == 202


def test_the_error_file_is_the_job_clients_like_the_manifest(secured):
    full, narrow = _tokens(secured, "system/*.cruds", "system/*.cruds", "system/Patient.rs")
    other = token_for(secured, "system/*.rs")
    _store_patient_data(secured, full)
    lenient = {"Prefer": "respond-async, handling=lenient"}
    resp = secured.get("/fhir/Patient/$export", params={"_until": "2026-01-01"}, headers=_h(full, **lenient))
    assert resp.status_code == 202, resp.text
    location = resp.headers["Content-Location"]
    manifest = wait_done(_Auth(secured, full), location).json()
    url = manifest["error"][0]["url"]
    assert secured.get(url).status_code == 401
    assert secured.get(url, headers=_h(other)).status_code == 404  # another client's job
    # the file says which parameters were ignored (no resource data): any token of the client
    # that may poll the manifest may read it, even one that reads no type the file could name
    assert secured.get(location, headers=_h(narrow)).json()["error"][0]["url"] == url
    got = secured.get(url, headers=_h(narrow))
    assert got.status_code == 200 and "_until" in got.text
    assert secured.get(url.replace("OperationOutcome.ndjson", "Patient.ndjson"), headers=_h(full)).status_code == 404
    assert secured.delete(location, headers=_h(full)).status_code == 202
    assert secured.get(url, headers=_h(full)).status_code == 404


def test_a_type_filter_selects_only_by_types_the_token_may_search(secured):
    """A ``_typeFilter`` chain or ``_has`` looks into another type, as a search does: 403 unless
    the token may search it (what exists there would leak through the export's contents)."""
    (token,) = _tokens(secured, "system/Patient.rs system/Observation.rs", "system/Patient.rs system/Observation.rs")
    chain = {"_type": "Observation", "_typeFilter": "Observation?encounter.status=finished"}
    assert _forbidden(secured.get("/fhir/Patient/$export", params=chain, headers=_h(token, **ASYNC)))
    has = {"_type": "Patient", "_typeFilter": "Patient?_has:Encounter:subject:status=finished"}
    assert _forbidden(secured.get("/fhir/Patient/$export", params=has, headers=_h(token, **ASYNC)))
    allowed = {"_type": "Observation", "_typeFilter": "Observation?subject.name=x"}
    assert secured.get("/fhir/Patient/$export", params=allowed, headers=_h(token, **ASYNC)).status_code == 202
