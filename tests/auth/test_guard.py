"""The 401 / 403 checks the HTTP layer runs in token mode."""

from __future__ import annotations

import pytest

from fhir_server.auth.guard import authenticate, readable, require, require_interaction, require_operation
from fhir_server.auth.scopes import ScopeSet
from fhir_server.auth.tokens import SigningKey, TokenVerifier, issue_access_token
from fhir_server.errors import FhirError

KEY = SigningKey("k", b"k" * 32)


def _verifier():
    return TokenVerifier(KEY)


def test_missing_token_is_401_with_a_bare_challenge():
    with pytest.raises(FhirError) as info:
        authenticate(None, _verifier())
    assert info.value.status == 401
    assert info.value.headers["WWW-Authenticate"] == 'Bearer realm="fhir"'
    assert info.value.issues[0].code == "login"


@pytest.mark.parametrize("header", ["Bearer nonsense", "Basic abc", "Bearer "])
def test_bad_token_is_401_invalid_token(header):
    with pytest.raises(FhirError) as info:
        authenticate(header, _verifier())
    if header.strip() == "Bearer":
        assert info.value.headers["WWW-Authenticate"].startswith('Bearer realm="fhir", error="invalid_token"')
    assert info.value.status == 401 and "invalid_token" in info.value.headers["WWW-Authenticate"]


def test_expired_token_is_401():
    token, _ = issue_access_token(KEY, client_id="c", scope="system/*.rs", issuer="i", lifetime=1, now=1000)
    with pytest.raises(FhirError) as info:
        authenticate(f"Bearer {token}", _verifier())
    assert "expired" in info.value.issues[0].diagnostics


def test_valid_token_gives_its_claims():
    token, _ = issue_access_token(KEY, client_id="c", scope="system/*.rs", issuer="i", lifetime=60)
    assert authenticate(f"Bearer {token}", _verifier()).client_id == "c"


def test_insufficient_scope_is_403_forbidden():
    scopes = ScopeSet.parse("system/Patient.rs")
    require_interaction(scopes, "Patient", "read")
    with pytest.raises(FhirError) as info:
        require_interaction(scopes, "Patient", "update")
    assert info.value.status == 403 and info.value.issues[0].code == "forbidden"
    assert 'error="insufficient_scope"' in info.value.headers["WWW-Authenticate"]
    with pytest.raises(FhirError):
        require_interaction(scopes, "Patient", "create", conditional=False)
    with pytest.raises(FhirError):
        require_interaction(ScopeSet.parse("system/Patient.c"), "Patient", "create", conditional=True)


def test_system_level_needs_a_wildcard():
    require(ScopeSet.parse("system/*.s"), None, {"search"})
    with pytest.raises(FhirError):
        require(ScopeSet.parse("system/Patient.s"), None, {"search"})


def test_audit_events_are_never_writable():
    scopes = ScopeSet.parse("system/*.cruds system/AuditEvent.cruds")
    require_interaction(scopes, "AuditEvent", "search-type")
    for interaction in ("create", "update", "patch", "delete"):
        with pytest.raises(FhirError):
            require_interaction(scopes, "AuditEvent", interaction)


def test_operations_and_included_types():
    scopes = ScopeSet.parse("system/Patient.rs system/Observation.r")
    require_operation(scopes, "Patient", "everything", affects_state=False)
    with pytest.raises(FhirError):
        require_operation(scopes, "Patient", "meta-add", affects_state=True)
    assert readable(scopes, "Observation") and not readable(scopes, "Encounter")
