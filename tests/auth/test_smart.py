"""SMART discovery document and the CapabilityStatement security element."""

from __future__ import annotations

from fhir_server.auth.smart import OAUTH_URIS, capability_security, smart_configuration

TOKEN_URL = "https://fhir.example.id/fhir/auth/token"


def test_smart_configuration_advertises_backend_services():
    doc = smart_configuration(TOKEN_URL)
    assert doc["token_endpoint"] == TOKEN_URL
    assert doc["grant_types_supported"] == ["client_credentials"]
    assert set(doc["token_endpoint_auth_methods_supported"]) == {"client_secret_basic", "client_secret_post", "private_key_jwt"}
    assert doc["token_endpoint_auth_signing_alg_values_supported"] == ["RS384", "ES384"]
    assert {"client-confidential-symmetric", "client-confidential-asymmetric"} <= set(doc["capabilities"])
    assert "system/*.rs" in doc["scopes_supported"] and "system/AuditEvent.rs" in doc["scopes_supported"]
    assert "authorization_endpoint" not in doc and "issuer" not in doc
    assert smart_configuration(TOKEN_URL, issuer="https://fhir.example.id/fhir")["issuer"] == "https://fhir.example.id/fhir"


def test_capability_security_has_the_smart_extension_and_service():
    security = capability_security(TOKEN_URL, cors=True)
    (ext,) = security["extension"]
    assert ext["url"] == OAUTH_URIS
    assert ext["extension"] == [{"url": "token", "valueUri": TOKEN_URL}]
    coding = security["service"][0]["coding"][0]
    assert coding == {
        "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
        "code": "SMART-on-FHIR",
        "display": "SMART-on-FHIR",
    }
    assert security["cors"] is True
