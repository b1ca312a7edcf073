"""FHIR_AUTH=token over HTTP: 401 without a token, 403 beyond the scopes, includes filtered."""

from __future__ import annotations

import orjson
import pytest
from fastapi.testclient import TestClient

from fhir_server.auth.clients import add_client
from tests.bundles import entries

pytestmark = pytest.mark.slow  # every test starts an app on a fresh database (migrations and seeding)

AMB = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}


def token_for(client: TestClient, scopes: str) -> str:
    with client.app.state.fhir.db.write() as conn:
        cid, secret = add_client(conn, name="SIMRS test", scopes=scopes)
    r = client.post(
        "/fhir/auth/token", data={"grant_type": "client_credentials", "client_id": cid, "client_secret": secret, "scope": scopes}
    )
    assert r.status_code == 200, r.text
    assert r.json()["token_type"] == "Bearer" and r.json()["expires_in"] > 0
    return r.json()["access_token"]


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}


def test_only_metadata_and_discovery_answer_without_a_token(secured):
    assert secured.get("/fhir/metadata").status_code == 200
    security = secured.get("/fhir/metadata").json()["rest"][0]["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    terminology = secured.get("/fhir/metadata?mode=terminology")  # the same access as metadata
    assert terminology.status_code == 200 and terminology.json()["resourceType"] == "TerminologyCapabilities"
    smart = secured.get("/fhir/.well-known/smart-configuration")
    assert smart.status_code == 200 and smart.json()["token_endpoint"] == "http://testserver/fhir/auth/token"
    for method, url in (
        ("GET", "/fhir/Patient"),
        ("GET", "/fhir/Patient/x"),
        ("POST", "/fhir/Patient"),
        ("POST", "/fhir"),
        ("GET", "/fhir/_history"),
        ("GET", "/fhir/CodeSystem/$lookup?system=x&code=y"),
        ("GET", "/fhir/$meta"),
    ):
        r = secured.request(method, url, content=b'{"resourceType":"Patient"}', headers={"Content-Type": "application/fhir+json"})
        assert r.status_code == 401, (method, url)
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert r.json()["resourceType"] == "OperationOutcome"
    bad = secured.get("/fhir/Patient", headers={"Authorization": "Bearer not-a-token"})
    assert bad.status_code == 401 and "invalid_token" in bad.headers["www-authenticate"]


def test_scopes_decide_each_interaction(secured):
    writer = token_for(secured, "system/*.cruds")
    reader = token_for(secured, "system/Patient.rs")
    pid = secured.post("/fhir/Patient", content=b'{"resourceType":"Patient","gender":"male"}', headers=auth(writer)).json()["id"]
    secured.post(
        "/fhir/Encounter",
        content=orjson.dumps({"resourceType": "Encounter", "status": "finished", "class": AMB, "subject": {"reference": f"Patient/{pid}"}}),
        headers=auth(writer),
    )
    assert secured.get(f"/fhir/Patient/{pid}", headers=auth(reader)).status_code == 200
    assert secured.get("/fhir/Patient?gender=male", headers=auth(reader)).status_code == 200
    denied = secured.post("/fhir/Patient", content=b'{"resourceType":"Patient"}', headers=auth(reader))
    assert denied.status_code == 403 and denied.json()["issue"][0]["code"] == "forbidden"
    assert secured.get("/fhir/Encounter", headers=auth(reader)).status_code == 403
    included = secured.get(f"/fhir/Patient?_id={pid}&_revinclude=Encounter:subject", headers=auth(reader)).json()["entry"]
    assert [e["resource"]["resourceType"] for e in included] == ["Patient"]  # the Encounter is out of scope: left out
    everything = secured.get(f"/fhir/Patient/{pid}/$everything", headers=auth(reader)).json()["entry"]
    assert [e["resource"]["resourceType"] for e in everything] == ["Patient"]


def test_v1_scopes_and_audit_event_is_never_covered_by_wildcards(secured):
    v1 = token_for(secured, "system/*.read")
    assert secured.get("/fhir/Patient", headers=auth(v1)).status_code == 200
    assert secured.post("/fhir/Patient", content=b'{"resourceType":"Patient"}', headers=auth(v1)).status_code == 403
    assert secured.get("/fhir/AuditEvent", headers=auth(v1)).status_code == 403


def test_a_transaction_with_one_entry_out_of_scope_is_refused_whole(secured):
    patients_only = token_for(secured, "system/Patient.cruds")
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
            {"resource": {"resourceType": "Organization", "name": "RS"}, "request": {"method": "POST", "url": "Organization"}},
        ],
    }
    r = secured.post("/fhir", content=orjson.dumps(bundle), headers=auth(patients_only))
    assert r.status_code == 403
    assert "Bundle.entry[1]" in r.json()["issue"][0]["diagnostics"]
    assert entries(secured.get("/fhir/Patient", headers=auth(patients_only)).json()) == []


def test_token_endpoint_errors_are_oauth2_errors(secured):
    wrong = secured.post("/fhir/auth/token", data={"grant_type": "client_credentials", "client_id": "nobody", "client_secret": "x"})
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    grant = secured.post("/fhir/auth/token", data={"grant_type": "password"})
    assert grant.status_code == 400 and grant.json()["error"] in ("unsupported_grant_type", "invalid_request")
