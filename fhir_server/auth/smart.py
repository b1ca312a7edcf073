"""SMART discovery: ``/.well-known/smart-configuration`` and the CapabilityStatement security element.

This server is a SMART Backend Services authorisation server only (client
credentials, no authorization endpoint, no user launch), so the discovery
document lists no ``authorization_endpoint`` and no PKCE methods.
"""

from __future__ import annotations

from typing import Any

from .clients import SIGNING_ALGS
from .token_endpoint import AUTH_METHODS, GRANT_TYPES

OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
SECURITY_SERVICE_SYSTEM = "http://terminology.hl7.org/CodeSystem/restful-security-service"

#: advertised examples: any system/ scope of the grammar in docs/security.md is accepted
SCOPES_SUPPORTED = (
    "system/*.read",
    "system/*.write",
    "system/*.*",
    "system/*.rs",
    "system/*.cruds",
    "system/Patient.rs",
    "system/AuditEvent.rs",
    "system/AuditEvent.read",
    "system/satusehat.read",
    "system/satusehat.write",
)

CAPABILITIES = (
    "client-confidential-symmetric",
    "client-confidential-asymmetric",
    "permission-v1",
    "permission-v2",
)


def smart_configuration(token_url: str, *, issuer: str | None = None) -> dict[str, Any]:
    """The ``/.well-known/smart-configuration`` document (served as ``application/json``)."""
    doc: dict[str, Any] = {}
    if issuer:
        doc["issuer"] = issuer
    doc.update(
        {
            "token_endpoint": token_url,
            "grant_types_supported": list(GRANT_TYPES),
            "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
            "token_endpoint_auth_signing_alg_values_supported": list(SIGNING_ALGS),
            "scopes_supported": list(SCOPES_SUPPORTED),
            "capabilities": list(CAPABILITIES),
        }
    )
    return doc


def capability_security(token_url: str, *, cors: bool = False) -> dict[str, Any]:
    """The CapabilityStatement ``rest[0].security`` element for token mode."""
    return {
        "extension": [
            {
                "url": OAUTH_URIS,
                "extension": [{"url": "token", "valueUri": token_url}],
            }
        ],
        "cors": cors,
        "service": [
            {
                "coding": [{"system": SECURITY_SERVICE_SYSTEM, "code": "SMART-on-FHIR", "display": "SMART-on-FHIR"}],
                "text": "OAuth2 client credentials (SMART Backend Services)",
            }
        ],
        "description": (
            "OAuth 2.0 client credentials: client_secret_basic / client_secret_post (SATUSEHAT style) or "
            "private_key_jwt (SMART Backend Services, RS384/ES384). Send 'Authorization: Bearer <token>'. "
            "SMART v1 and v2 system/ scopes; AuditEvent needs an explicit system/AuditEvent scope."
        ),
    }
