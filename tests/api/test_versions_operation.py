"""``GET [base]/$versions`` (R4 capabilitystatement-operation-versions.html) and ``$closure``.

``$versions`` is how a client finds the FHIR versions an endpoint serves (versioning.html#mt-version):
a Parameters with one ``version`` per version and the ``default``, major.minor codes. This server
serves R4 only: ``4.0`` and default ``4.0``. ``$closure`` (ConceptMap closure tables) is not
implemented: the CapabilityStatement and TerminologyCapabilities must not claim it, and a call is
a 4xx OperationOutcome.
"""

from __future__ import annotations

import orjson
import pytest

from tests.security.test_token_auth_http import auth, token_for

H = {"Content-Type": "application/fhir+json"}
VERSIONS = {"resourceType": "Parameters", "parameter": [{"name": "version", "valueCode": "4.0"}, {"name": "default", "valueCode": "4.0"}]}
DEFINITION = "http://hl7.org/fhir/OperationDefinition/CapabilityStatement-versions"


def test_versions_names_r4_as_the_only_and_default_version(client):
    r = client.get("/fhir/$versions")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/fhir+json")
    assert r.json() == VERSIONS
    assert client.post("/fhir/$versions").json() == VERSIONS  # an idempotent operation: GET or POST
    assert client.get("/fhir/$versions/", headers={"Accept": "application/fhir+json; fhirVersion=4.0"}).json() == VERSIONS
    xml = client.get("/fhir/$versions", headers={"Accept": "application/fhir+xml"})
    assert xml.status_code == 200 and b'<valueCode value="4.0"/>' in xml.content
    # what it answers is a valid R4 Parameters (the write validation's verdict)
    wrapped = {"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": VERSIONS}]}
    validated = client.post("/fhir/Parameters/$validate", content=orjson.dumps(wrapped), headers=H)
    assert all(i["severity"] not in ("error", "fatal") for i in validated.json()["issue"]), validated.text


def test_versions_is_declared_and_its_definition_is_served(client):
    rest = client.get("/fhir/metadata").json()["rest"][0]
    assert {"name": "versions", "definition": DEFINITION} in rest["operation"]
    assert all(op["name"] != "versions" for r in rest["resource"] for op in r.get("operation", []))
    from fhir_server.service.seed import seed_conformance

    seed_conformance(client.app.state.fhir.resources)  # as at start-up (the fixture empties the tables)
    found = client.get("/fhir/OperationDefinition", params={"url": DEFINITION}).json()
    assert [e["resource"]["code"] for e in found["entry"]] == ["versions"]
    # system level only, as its definition says
    assert client.get("/fhir/CapabilityStatement/$versions").status_code == 404


@pytest.mark.parametrize("kind", ["batch", "transaction"])
def test_versions_as_a_bundle_entry(client, kind):
    bundle = {"resourceType": "Bundle", "type": kind, "entry": [{"request": {"method": "GET", "url": "$versions"}}]}
    r = client.post("/fhir", content=orjson.dumps(bundle), headers=H)
    if kind == "transaction":  # operations run in batches only (docs/interop.md)
        assert r.status_code == 400 and "batch" in r.json()["issue"][0]["diagnostics"]
        return
    (entry,) = r.json()["entry"]
    assert entry["response"]["status"].startswith("200") and entry["resource"] == VERSIONS


@pytest.mark.slow
def test_token_mode_any_client_may_ask_for_the_versions(secured):
    """It says what the CapabilityStatement says (fhirVersion): a token is needed, as for every
    operation, but no scope (a system-level operation would otherwise need a wildcard)."""
    assert secured.get("/fhir/$versions").status_code == 401
    token = token_for(secured, "system/Observation.rs")
    r = secured.get("/fhir/$versions", headers=auth(token))
    assert r.status_code == 200 and r.json() == VERSIONS


@pytest.mark.parametrize("path", ["/fhir/$closure", "/fhir/ConceptMap/$closure"])
def test_closure_is_not_claimed_and_a_call_is_a_4xx_operation_outcome(client, path):
    rest = client.get("/fhir/metadata").json()["rest"][0]
    names = {op["name"] for op in rest["operation"]} | {op["name"] for r in rest["resource"] for op in r.get("operation", [])}
    assert "closure" not in names
    assert "closure" not in client.get("/fhir/metadata?mode=terminology").json()
    body = {"resourceType": "Parameters", "parameter": [{"name": "name", "valueString": "table"}]}
    r = client.post(path, content=orjson.dumps(body), headers=H)
    assert 400 <= r.status_code < 500 and r.json()["resourceType"] == "OperationOutcome"
    assert "$closure is not supported" in r.json()["issue"][0]["diagnostics"]
