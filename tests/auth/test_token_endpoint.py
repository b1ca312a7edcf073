"""The token endpoint: client credentials with a secret (basic / post) and private_key_jwt."""

from __future__ import annotations

import base64
import time
from urllib.parse import quote_plus

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from fhir_server.auth.clients import add_client, revoke_client
from fhir_server.auth.token_endpoint import JWT_BEARER, OAuthError, TokenSettings, issue_token
from fhir_server.auth.tokens import SigningKey, verify_access_token

from .keyutil import TOKEN_URL, assertion, public_jwk

KEY = SigningKey("k", b"k" * 32)
SETTINGS = TokenSettings(key=KEY, issuer="http://testserver/fhir", lifetime=300)


def _issue(db, form, authorization=None, now=None):
    with db.write() as conn:
        return issue_token(conn, form, authorization, TOKEN_URL, settings=SETTINGS, now=now)


def _error(db, form, authorization=None, now=None) -> OAuthError:
    with pytest.raises(OAuthError) as info:
        _issue(db, form, authorization, now)
    return info.value


def _basic(client_id, secret):
    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return "Basic " + base64.b64encode(raw).decode()


@pytest.fixture
def secret_client(db):
    with db.write() as conn:
        return add_client(conn, name="SIMRS", scopes="system/*.rs system/Encounter.cu", organization_id="10000004")


@pytest.fixture
def key_client(db, rsa_key, ec_key):
    jwks = {"keys": [public_jwk(rsa_key, "rsa-1"), public_jwk(ec_key, "ec-1")]}
    with db.write() as conn:
        return add_client(conn, name="Backend", scopes="system/*.read", jwks=jwks)[0]


def _jwt_form(token, **extra):
    """A private_key_jwt token request; ``scope`` (required by SMART) defaults to one the key client has."""
    form = {"grant_type": "client_credentials", "client_assertion_type": JWT_BEARER, "client_assertion": token, "scope": "system/*.read"}
    form.update(extra)
    return {k: v for k, v in form.items() if v is not None}


def _with_headers(private_key, client_id, alg, headers):
    """A client assertion like keyutil.assertion's, with extra JOSE header fields (``jku``)."""
    token = assertion(private_key, client_id, alg=alg, kid=None)
    claims = jwt.decode(token, options={"verify_signature": False})
    return jwt.encode(claims, private_key, algorithm=alg, headers=headers)


class TestClientSecret:
    def test_client_secret_basic_issues_a_bearer_token(self, db, secret_client):
        client_id, secret = secret_client
        body = _issue(db, {"grant_type": "client_credentials"}, _basic(client_id, secret))
        assert body["token_type"] == "Bearer"
        assert body["expires_in"] == 300 and isinstance(body["expires_in"], int)
        assert body["scope"] == "system/*.rs system/Encounter.cu"
        claims = verify_access_token(body["access_token"], KEY)
        assert claims.client_id == client_id and claims.organization_id == "10000004"
        assert claims.scopes.allows("Encounter", "update") and not claims.scopes.allows("Patient", "create")

    def test_client_secret_post_issues_a_bearer_token(self, db, secret_client):
        client_id, secret = secret_client
        body = _issue(db, {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret})
        assert verify_access_token(body["access_token"], KEY).client_id == client_id

    def test_wrong_secret_is_invalid_client_401(self, db, secret_client):
        client_id, secret = secret_client
        err = _error(db, {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret + "x"})
        assert (err.status, err.body["error"]) == (401, "invalid_client")
        assert err.headers["Cache-Control"] == "no-store"
        err = _error(db, {"grant_type": "client_credentials"}, _basic(client_id, "wrong"))
        assert (err.status, err.error) == (401, "invalid_client")
        assert err.headers["WWW-Authenticate"].startswith("Basic")

    def test_unknown_client_looks_like_a_wrong_secret(self, db, secret_client):
        unknown = _error(db, {"grant_type": "client_credentials", "client_id": "nobody", "client_secret": "x"})
        wrong = _error(db, {"grant_type": "client_credentials", "client_id": secret_client[0], "client_secret": "x"})
        assert unknown.body == wrong.body and unknown.status == 401

    def test_revoked_client_is_refused(self, db, secret_client):
        client_id, secret = secret_client
        with db.write() as conn:
            revoke_client(conn, client_id)
        err = _error(db, {"grant_type": "client_credentials"}, _basic(client_id, secret))
        assert (err.status, err.error) == (401, "invalid_client")

    def test_no_client_authentication_is_invalid_client(self, db):
        err = _error(db, {"grant_type": "client_credentials", "client_id": "x"})
        assert (err.status, err.error) == (401, "invalid_client")

    def test_two_authentication_methods_are_invalid_request(self, db, secret_client):
        client_id, secret = secret_client
        err = _error(db, {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}, _basic(client_id, secret))
        assert (err.status, err.error) == (400, "invalid_request")

    def test_malformed_basic_header_is_invalid_client(self, db):
        for header in ["Basic !!!", "Basic " + base64.b64encode(b"no-colon").decode(), "Digest abc"]:
            err = _error(db, {"grant_type": "client_credentials"}, header)
            assert (err.status, err.error) == (401, "invalid_client")

    def test_grant_type_is_required_and_must_be_client_credentials(self, db, secret_client):
        client_id, secret = secret_client
        err = _error(db, {}, _basic(client_id, secret))
        assert (err.status, err.error) == (400, "invalid_request")
        err = _error(db, {"grant_type": "password"}, _basic(client_id, secret))
        assert (err.status, err.error) == (400, "unsupported_grant_type")


class TestScopeNarrowing:
    def test_requested_scope_is_narrowed_to_the_clients_scopes(self, db, secret_client):
        client_id, secret = secret_client
        body = _issue(
            db, {"grant_type": "client_credentials", "scope": "system/Patient.cruds system/Encounter.rs"}, _basic(client_id, secret)
        )
        assert body["scope"] == "system/Patient.rs system/Encounter.rs"
        claims = verify_access_token(body["access_token"], KEY)
        assert not claims.scopes.allows("Patient", "create") and not claims.scopes.allows("Observation", "read")

    def test_secret_client_without_scope_gets_its_registered_scopes(self, db, secret_client):
        # SATUSEHAT-style clients send no scope: RFC 6749 §3.3 lets the server use a pre-defined default
        client_id, secret = secret_client
        for form in ({"grant_type": "client_credentials"}, {"grant_type": "client_credentials", "scope": " "}):
            assert _issue(db, form, _basic(client_id, secret))["scope"] == "system/*.rs system/Encounter.cu"

    @pytest.mark.parametrize(
        "scope",
        [
            "system/UnknownResource.read",
            "system/Patient.rs system/UnknownResource.read",
            "system/*.rs patient/Foo.rs",
            "system/Patientx.cruds",
        ],
    )
    def test_unknown_resource_type_is_invalid_scope(self, db, secret_client, scope):
        # refused as a whole, even next to a good scope: the client asked for something that does not exist
        client_id, secret = secret_client
        err = _error(db, {"grant_type": "client_credentials", "scope": scope}, _basic(client_id, secret))
        assert (err.status, err.error) == (400, "invalid_scope")
        assert scope.split()[-1] in err.description and err.headers["Cache-Control"] == "no-store"

    def test_nothing_grantable_is_invalid_scope(self, db, secret_client):
        client_id, secret = secret_client
        err = _error(db, {"grant_type": "client_credentials", "scope": "system/AuditEvent.rs patient/*.read"}, _basic(client_id, secret))
        assert (err.status, err.error) == (400, "invalid_scope")


class TestPrivateKeyJwt:
    @pytest.mark.parametrize("which, alg, kid", [("rsa", "RS384", "rsa-1"), ("ec", "ES384", "ec-1"), ("ec", "ES384", None)])
    def test_signed_assertion_issues_a_token(self, db, key_client, rsa_key, ec_key, which, alg, kid):
        private = rsa_key if which == "rsa" else ec_key
        body = _issue(db, _jwt_form(assertion(private, key_client, alg=alg, kid=kid), scope="system/Patient.read"))
        assert body["scope"] == "system/Patient.read"
        assert verify_access_token(body["access_token"], KEY).client_id == key_client

    def test_wrong_audience_is_refused(self, db, key_client, rsa_key):
        token = assertion(rsa_key, key_client, alg="RS384", kid="rsa-1", aud="http://evil/token")
        err = _error(db, _jwt_form(token))
        assert (err.status, err.error) == (401, "invalid_client") and "aud" in err.description

    def test_expired_assertion_is_refused(self, db, key_client, rsa_key):
        now = time.time()
        token = assertion(rsa_key, key_client, alg="RS384", kid="rsa-1", now=now - 600, lifetime=240)
        err = _error(db, _jwt_form(token), now=now)
        assert (err.status, err.error) == (401, "invalid_client") and "expired" in err.description

    def test_assertion_valid_for_more_than_five_minutes_is_refused(self, db, key_client, rsa_key):
        token = assertion(rsa_key, key_client, alg="RS384", kid="rsa-1", lifetime=3600)
        assert "at most 300" in _error(db, _jwt_form(token)).description

    def test_reused_jti_is_refused(self, db, key_client, ec_key):
        form = _jwt_form(assertion(ec_key, key_client, alg="ES384", kid="ec-1", jti="once"))
        _issue(db, form)
        err = _error(db, form)
        assert (err.status, err.error) == (401, "invalid_client") and "already been used" in err.description

    def test_assertion_signed_with_an_unregistered_key_is_refused(self, db, key_client):
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        for kid in ("rsa-1", None):
            err = _error(db, _jwt_form(assertion(other, key_client, alg="RS384", kid=kid)))
            assert (err.status, err.error) == (401, "invalid_client")
        other_ec = ec.generate_private_key(ec.SECP384R1())
        assert _error(db, _jwt_form(assertion(other_ec, key_client, alg="ES384", kid="ec-1"))).status == 401

    def test_other_algorithms_are_refused(self, db, key_client, rsa_key):
        err = _error(db, _jwt_form(assertion(rsa_key, key_client, alg="RS256", kid="rsa-1")))
        assert (err.status, err.error) == (401, "invalid_client") and "RS384" in err.description
        hs = jwt.encode(
            {"iss": key_client, "sub": key_client, "aud": TOKEN_URL, "exp": int(time.time()) + 60, "jti": "h"}, "s" * 32, algorithm="HS256"
        )
        assert _error(db, _jwt_form(hs)).status == 401

    def test_iss_and_sub_must_be_the_client(self, db, key_client, rsa_key):
        token = assertion(rsa_key, key_client, alg="RS384", kid="rsa-1", sub="someone-else")
        assert _error(db, _jwt_form(token)).error == "invalid_client"
        token = assertion(rsa_key, key_client, alg="RS384", kid="rsa-1")
        assert _error(db, _jwt_form(token, client_id="other")).error == "invalid_client"

    def test_missing_jti_is_refused(self, db, key_client, rsa_key):
        token = assertion(rsa_key, key_client, alg="RS384", kid="rsa-1", jti=None)
        token = jwt.encode(
            {k: v for k, v in jwt.decode(token, options={"verify_signature": False}).items() if k != "jti"},
            rsa_key,
            algorithm="RS384",
            headers={"kid": "rsa-1"},
        )
        assert "jti" in _error(db, _jwt_form(token)).description

    def test_wrong_assertion_type_is_invalid_request(self, db, key_client, rsa_key):
        token = assertion(rsa_key, key_client, alg="RS384", kid="rsa-1")
        err = _error(db, _jwt_form(token, client_assertion_type="urn:other"))
        assert (err.status, err.error) == (400, "invalid_request")

    def test_client_without_keys_cannot_use_an_assertion(self, db, secret_client, rsa_key):
        token = assertion(rsa_key, secret_client[0], alg="RS384", kid="rsa-1")
        assert _error(db, _jwt_form(token)).error == "invalid_client"

    def test_revoked_key_client_is_refused(self, db, key_client, rsa_key):
        with db.write() as conn:
            revoke_client(conn, key_client)
        assert _error(db, _jwt_form(assertion(rsa_key, key_client, alg="RS384", kid="rsa-1"))).status == 401

    @pytest.mark.parametrize("scope", [None, "", "   "])
    def test_scope_is_required(self, db, key_client, rsa_key, scope):
        # SMART Backend Services: scope is a required token request parameter -> RFC 6749 §5.2 invalid_request
        err = _error(db, _jwt_form(assertion(rsa_key, key_client, alg="RS384", kid="rsa-1"), scope=scope))
        assert (err.status, err.error) == (400, "invalid_request") and "scope" in err.description
        assert err.headers["Cache-Control"] == "no-store"

    def test_unknown_resource_type_is_invalid_scope(self, db, key_client, ec_key):
        token = assertion(ec_key, key_client, alg="ES384", kid="ec-1")
        err = _error(db, _jwt_form(token, scope="system/Patient.read system/UnknownResource.read"))
        assert (err.status, err.error) == (400, "invalid_scope") and "UnknownResource" in err.description

    @pytest.mark.parametrize("jku", ["https://evil.example/jwks.json", "http://testserver/fhir/.well-known/jwks.json", ""])
    def test_assertion_with_a_jku_is_refused(self, db, key_client, rsa_key, ec_key, jku):
        # SMART: a jku SHALL match the JWKS URL registered for the client; keys are registered by
        # value here (no JWKS URL), so no jku can match, even on an assertion the registered key signed
        for private, alg, kid in ((rsa_key, "RS384", "rsa-1"), (ec_key, "ES384", None)):
            headers = {"jku": jku, **({"kid": kid} if kid else {})}
            err = _error(db, _jwt_form(_with_headers(private, key_client, alg, headers)))
            assert (err.status, err.error) == (401, "invalid_client") and "jku" in err.description

    def test_jku_of_an_unknown_client_says_nothing_about_the_client(self, db, rsa_key):
        err = _error(db, _jwt_form(_with_headers(rsa_key, "nobody", "RS384", {"jku": "https://x/jwks"})))
        assert (err.status, err.error) == (401, "invalid_client") and "nobody" not in err.description

    def test_garbage_assertion_is_invalid_client(self, db):
        assert _error(db, _jwt_form("not-a-jwt")).error == "invalid_client"


class TestFormParsing:
    def test_body_and_query_are_merged(self):
        from fhir_server.auth.token_endpoint import parse_form

        assert parse_form(b"client_id=a&client_secret=b%2Bc", "grant_type=client_credentials") == {
            "grant_type": "client_credentials",
            "client_id": "a",
            "client_secret": "b+c",
        }
        assert parse_form(b"") == {}

    def test_repeated_or_malformed_parameters_are_invalid_request(self):
        from fhir_server.auth.token_endpoint import parse_form

        for body, query in [(b"scope=a&scope=b", ""), (b"grant_type=x", "grant_type=y"), (b"\xff\xfe", ""), (b"no-equals-sign&&", "")]:
            with pytest.raises(OAuthError) as info:
                parse_form(body, query)
            assert (info.value.status, info.value.error) == (400, "invalid_request")


def test_assertion_of_exactly_five_minutes_is_accepted(db, key_client, rsa_key):
    token = assertion(rsa_key, key_client, alg="RS384", kid="rsa-1", lifetime=300)
    assert _issue(db, _jwt_form(token))["token_type"] == "Bearer"


def test_only_assertion_requests_need_a_write_transaction(db, secret_client):
    from fhir_server.auth.token_endpoint import requires_write

    client_id, secret = secret_client
    form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    assert not requires_write(form)
    assert requires_write(_jwt_form("x"))
    with db.read() as conn:
        assert issue_token(conn, form, None, TOKEN_URL, settings=SETTINGS)["token_type"] == "Bearer"
