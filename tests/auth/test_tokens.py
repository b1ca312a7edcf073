"""Signed access tokens: issue, verify, expiry, tampering, the shared signing key."""

from __future__ import annotations

import base64
import json

import jwt
import pytest

from fhir_server.auth.tokens import (
    InvalidToken,
    SigningKey,
    TokenVerifier,
    bearer_token,
    issue_access_token,
    load_signing_key,
    verify_access_token,
    www_authenticate,
)

KEY = SigningKey(kid="k1", secret=b"s" * 32)
ISSUER = "http://testserver/fhir"
NOW = 1_800_000_000


def _token(**kw):
    args = dict(client_id="c1", scope="system/*.rs", issuer=ISSUER, lifetime=300, now=NOW)
    args.update(kw)
    return issue_access_token(KEY, **args)[0]


def test_issued_token_verifies_with_its_claims():
    token, expires_in = issue_access_token(
        KEY, client_id="c1", scope="system/Patient.rs", issuer=ISSUER, lifetime=300, organization_id="10000004", now=NOW
    )
    claims = verify_access_token(token, KEY, issuer=ISSUER, now=NOW + 10)
    assert expires_in == 300
    assert (claims.client_id, claims.scope, claims.organization_id) == ("c1", "system/Patient.rs", "10000004")
    assert (claims.issued_at, claims.expires_at, claims.issuer) == (NOW, NOW + 300, ISSUER)
    assert claims.scopes.allows("Patient", "search") and not claims.scopes.allows("Patient", "update")
    payload = jwt.decode(token, options={"verify_signature": False})
    assert payload["sub"] == payload["client_id"] == "c1" and payload["jti"]
    assert jwt.get_unverified_header(token)["typ"] == "at+jwt"


def test_token_without_organization_has_no_organization_claim():
    token = _token()
    assert "organization_id" not in jwt.decode(token, options={"verify_signature": False})
    assert verify_access_token(token, KEY, now=NOW).organization_id is None


def test_expired_token_is_refused():
    token = _token()
    with pytest.raises(InvalidToken, match="expired"):
        verify_access_token(token, KEY, now=NOW + 300)


def test_tampered_token_is_refused():
    header, payload, signature = _token().split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["scope"] = "system/*.cruds system/AuditEvent.rs"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(InvalidToken, match="signature"):
        verify_access_token(f"{header}.{forged}.{signature}", KEY, now=NOW)


def test_token_signed_with_another_key_is_refused():
    token = issue_access_token(SigningKey("k1", b"t" * 32), client_id="c1", scope="system/*.rs", issuer=ISSUER, lifetime=300, now=NOW)[0]
    with pytest.raises(InvalidToken):
        verify_access_token(token, KEY, now=NOW)
    with pytest.raises(InvalidToken, match="not issued by this server"):
        verify_access_token(_token(), SigningKey("k2", KEY.secret), now=NOW)


def test_unsigned_token_is_refused():
    claims = jwt.decode(_token(), options={"verify_signature": False})
    unsigned = jwt.encode(claims, None, algorithm="none", headers={"kid": "k1"})
    with pytest.raises(InvalidToken):
        verify_access_token(unsigned, KEY, now=NOW)


def test_garbage_is_refused():
    with pytest.raises(InvalidToken):
        verify_access_token("not.a.jwt", KEY, now=NOW)


def test_issuer_is_checked_when_given():
    with pytest.raises(InvalidToken, match="another server"):
        verify_access_token(_token(), KEY, issuer="http://elsewhere/fhir", now=NOW)


def test_verifier_cache_still_checks_expiry():
    verifier = TokenVerifier(KEY, issuer=ISSUER, size=2)
    token = _token()
    assert verifier.verify(token, now=NOW).client_id == "c1"
    assert verifier.verify(token, now=NOW + 1).client_id == "c1"
    with pytest.raises(InvalidToken, match="expired"):
        verifier.verify(token, now=NOW + 301)
    for i in range(3):
        verifier.verify(_token(client_id=f"c{i}"), now=NOW)
    assert len(verifier._cache) == 2


def test_bearer_header_parsing():
    assert bearer_token(None) is None
    assert bearer_token("") is None
    assert bearer_token("Bearer abc.def.ghi") == "abc.def.ghi"
    assert bearer_token("bearer  abc") == "abc"
    for bad in ["Basic abc", "Bearer", "Bearer a b", "Token x"]:
        with pytest.raises(InvalidToken):
            bearer_token(bad)


def test_www_authenticate_values():
    assert www_authenticate() == 'Bearer realm="fhir"'
    assert www_authenticate(error="invalid_token", description='the "token" expired') == (
        'Bearer realm="fhir", error="invalid_token", error_description="the \\"token\\" expired"'
    )


def test_configured_secret_is_the_key_everywhere(db):
    with db.write() as conn:
        a = load_signing_key(conn, "x" * 40)
    assert a == SigningKey(a.kid, b"x" * 40) and a == load_signing_key(None, "x" * 40)
    with pytest.raises(ValueError, match="at least 32"):
        load_signing_key(None, "short")


def test_database_key_is_created_once_and_shared(db):
    with db.write() as conn:
        first = load_signing_key(conn)
    with db.write() as conn:
        second = load_signing_key(conn)
    assert first == second and len(first.secret) == 32
    token = issue_access_token(first, client_id="c", scope="system/*.rs", issuer=ISSUER, lifetime=60)[0]
    assert verify_access_token(token, second).client_id == "c"


def test_token_issued_here_verifies_in_another_process(db):
    import subprocess
    import sys
    from pathlib import Path

    with db.write() as conn:
        key = load_signing_key(conn)
    token = issue_access_token(key, client_id="worker-test", scope="system/*.rs", issuer=ISSUER, lifetime=3600)[0]  # outlives a slow start
    script = (
        "import sys\n"
        "from fhir_server.storage.db import Database\n"
        "from fhir_server.auth.tokens import load_signing_key, verify_access_token\n"
        "db = Database.from_url(sys.argv[1])\n"
        "with db.write() as conn:\n"
        "    key = load_signing_key(conn)\n"
        "print(verify_access_token(sys.argv[2], key).client_id)\n"
    )
    url = db.engine.url.render_as_string(hide_password=False)
    out = subprocess.run(
        [sys.executable, "-c", script, url, token], capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parents[2]
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "worker-test"
