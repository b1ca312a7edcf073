"""The OAuth 2.0 token endpoint, transport-free: form fields in, token response out.

Grant: ``client_credentials`` only. Client authentication (exactly one per request):

* ``client_secret_basic``: ``Authorization: Basic base64(client_id:client_secret)``
  (each part form-urlencoded first, RFC 6749 §2.3.1);
* ``client_secret_post``: ``client_id`` and ``client_secret`` form fields (what
  SATUSEHAT clients send);
* ``private_key_jwt`` (SMART Backend Services): ``client_assertion_type`` =
  ``urn:ietf:params:oauth:client-assertion-type:jwt-bearer`` and a
  ``client_assertion`` JWT signed RS384 / ES384 with a key registered for the
  client, ``iss`` = ``sub`` = client id, ``aud`` = the token URL, ``exp`` no
  more than five minutes ahead, a ``jti`` never used before, no ``jku`` header.

``scope``: required with ``private_key_jwt`` (SMART Backend Services lists it as
a required token request parameter); optional with a secret, where a request
without it gets all of the client's scopes (RFC 6749 §3.3 lets the server use a
pre-defined default; SATUSEHAT-style clients send none). A scope naming an
unknown resource type refuses the whole request with ``invalid_scope``.

Failures raise :class:`OAuthError` carrying the RFC 6749 §5.2 status, JSON
body and headers. Every authentication failure is the same ``invalid_client``
so callers cannot probe which client ids exist.
"""

from __future__ import annotations

import base64
import binascii
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

import jwt
from sqlalchemy.engine import Connection

from .clients import SIGNING_ALGS, Client, client_keys, get_client, record_assertion_jti, verify_secret
from .scopes import InvalidScope, narrow
from .tokens import SigningKey, issue_access_token

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
GRANT_TYPES = ("client_credentials",)
AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt")
#: longest client-assertion lifetime accepted (SMART Backend Services: five minutes)
MAX_ASSERTION_LIFETIME = 300
#: tolerated difference between the client's clock and ours, in seconds
CLOCK_SKEW = 60
#: headers every token response (success or error) carries (RFC 6749 §5.1)
RESPONSE_HEADERS = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_MAX_JTI = 255


@dataclass
class OAuthError(Exception):
    """An RFC 6749 §5.2 error response: ``status``, JSON ``body`` and ``headers``."""

    status: int
    error: str
    description: str
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}

    def __str__(self) -> str:  # pragma: no cover - debugging aid
        return f"{self.status} {self.error}: {self.description}"


def _invalid_client(description: str = "client authentication failed", *, basic: bool = False) -> OAuthError:
    headers = dict(RESPONSE_HEADERS)
    if basic:
        headers["WWW-Authenticate"] = 'Basic realm="fhir"'
    return OAuthError(401, "invalid_client", description, headers)


def _bad(error: str, description: str) -> OAuthError:
    return OAuthError(400, error, description, dict(RESPONSE_HEADERS))


@dataclass(frozen=True)
class TokenSettings:
    """What the endpoint needs from the server settings."""

    key: SigningKey
    #: ``iss`` of the access tokens (the FHIR base URL)
    issuer: str
    #: access token lifetime in seconds (FHIR_AUTH_TOKEN_LIFETIME)
    lifetime: int = 300


def parse_form(body: bytes, query: str = "") -> dict[str, str]:
    """The token request's parameters from an ``application/x-www-form-urlencoded`` body
    plus the query string (SATUSEHAT clients put ``grant_type`` there).

    A parameter given twice is ``invalid_request`` (RFC 6749 §3.2); so is a body
    that is not UTF-8 form encoding.
    """
    try:
        pairs = parse_qsl(query, keep_blank_values=True) + parse_qsl(
            body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body.strip())
        )
    except (UnicodeDecodeError, ValueError):
        raise _bad("invalid_request", "the body must be application/x-www-form-urlencoded") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise _bad("invalid_request", f"parameter '{name}' is repeated")
        form[name] = value
    return form


def requires_write(form: dict[str, str]) -> bool:
    """Whether :func:`issue_token` will write (a private_key_jwt request records its ``jti``).

    Secret-authenticated requests only read: run them in a read transaction so
    the ~0.1 s scrypt check does not hold SQLite's single writer lock.
    """
    return _uses_assertion(form)


def _uses_assertion(form: dict[str, str]) -> bool:
    """Whether the request authenticates with private_key_jwt (the SMART Backend Services way)."""
    return "client_assertion" in form or "client_assertion_type" in form


def issue_token(
    conn: Connection,
    form: dict[str, str],
    authorization_header: str | None,
    token_url: str,
    *,
    settings: TokenSettings,
    now: float | None = None,
) -> dict[str, Any]:
    """Handle a token request; returns the RFC 6749 §5.1 JSON body or raises :class:`OAuthError`.

    ``form`` holds the ``application/x-www-form-urlencoded`` fields (merge in
    the query string too: SATUSEHAT clients send ``grant_type`` there).
    ``token_url`` is the absolute URL the client posted to (the ``aud`` of
    client assertions). ``conn`` must be a write transaction when
    :func:`requires_write` says so (a private_key_jwt request records its
    assertion ``jti``); a read transaction is enough otherwise.
    The response must carry :data:`RESPONSE_HEADERS`.
    """
    current = time.time() if now is None else now
    grant_type = form.get("grant_type")
    if not grant_type:
        raise _bad("invalid_request", "grant_type is required")
    if grant_type not in GRANT_TYPES:
        raise _bad("unsupported_grant_type", f"grant_type '{grant_type}' is not supported; use client_credentials")
    client = _authenticate(conn, form, authorization_header, token_url, current)
    scope = " ".join(_granted_scopes(form, client))
    token, expires_in = issue_access_token(
        settings.key,
        client_id=client.client_id,
        scope=scope,
        issuer=settings.issuer,
        lifetime=settings.lifetime,
        organization_id=client.organization_id,
        now=current,
    )
    return {"access_token": token, "token_type": "Bearer", "expires_in": expires_in, "scope": scope}


def _granted_scopes(form: dict[str, str], client: Client) -> list[str]:
    """The scopes to issue: the request's ``scope`` narrowed to the client's (checked after
    authentication, so an unauthenticated caller learns nothing about the client)."""
    requested = form.get("scope")
    if _uses_assertion(form) and not (requested or "").strip():
        # SMART Backend Services: "scope: required"; a missing required parameter is
        # invalid_request (RFC 6749 §5.2), not invalid_scope
        raise _bad("invalid_request", "scope is required (SMART Backend Services), e.g. scope=system/Patient.rs")
    try:
        granted = narrow(requested, client.scope_set)
    except InvalidScope as exc:
        # RFC 6749 §5.2 invalid_scope: "the requested scope is invalid, unknown, malformed, ..."
        raise _bad("invalid_scope", str(exc)) from None
    if not granted:
        raise _bad("invalid_scope", "none of the requested scopes is allowed for this client")
    return granted


def _authenticate(conn: Connection, form: dict[str, str], authorization: str | None, token_url: str, now: float) -> Client:
    basic = _basic_credentials(authorization)
    has_post_secret = "client_secret" in form
    has_assertion = _uses_assertion(form)
    methods = sum([basic is not None, has_post_secret, has_assertion])
    if methods > 1:
        raise _bad("invalid_request", "use exactly one client authentication method")
    if basic is not None:
        client_id, secret = basic
        if form.get("client_id") not in (None, client_id):
            raise _bad("invalid_request", "client_id does not match the Authorization header")
        return _by_secret(conn, client_id, secret, basic=True)
    if has_post_secret:
        posted_id = form.get("client_id")
        if not posted_id:
            raise _bad("invalid_request", "client_id is required with client_secret")
        return _by_secret(conn, posted_id, form["client_secret"], basic=False)
    if has_assertion:
        return _by_assertion(conn, form, token_url, now)
    raise _invalid_client("client authentication is required (client_secret_basic, client_secret_post or private_key_jwt)")


def _basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    if not authorization or not authorization.strip():
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        raise _invalid_client("unsupported Authorization scheme; use Basic", basic=True)
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise _invalid_client("malformed Basic credentials", basic=True) from None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise _invalid_client("malformed Basic credentials", basic=True)
    return unquote_plus(client_id), unquote_plus(secret)


def _by_secret(conn: Connection, client_id: str, secret: str, *, basic: bool) -> Client:
    client = get_client(conn, client_id)
    usable = client is not None and client.active
    # verify_secret does the same work for unknown clients (no timing oracle)
    ok = verify_secret(secret, client.secret_hash if usable and client else None)
    if not ok or client is None:
        raise _invalid_client(basic=basic)
    return client


def _by_assertion(conn: Connection, form: dict[str, str], token_url: str, now: float) -> Client:
    if form.get("client_assertion_type") != JWT_BEARER:
        raise _bad("invalid_request", f"client_assertion_type must be {JWT_BEARER}")
    assertion = form.get("client_assertion")
    if not assertion:
        raise _bad("invalid_request", "client_assertion is required")
    try:
        header = jwt.get_unverified_header(assertion)
        unverified = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        raise _invalid_client("client_assertion is not a JWT") from None
    alg = header.get("alg")
    if alg not in SIGNING_ALGS:
        raise _invalid_client(f"client_assertion must be signed with {' or '.join(SIGNING_ALGS)}")
    if "jku" in header:
        # SMART: a jku "SHALL match the JWKS URL value that the client supplied ... at client
        # registration time", else "the signature verification fails". Clients register their
        # keys by value here (no JWKS URL), so no jku can match: refuse it before the client is
        # looked up, which also says nothing about whether the client exists
        raise _invalid_client(
            "client_assertion jku is not accepted: this server holds the client's keys, registered by value (no JWKS URL)"
        )
    client_id = unverified.get("iss")
    if not isinstance(client_id, str) or unverified.get("sub") != client_id:
        raise _invalid_client("client_assertion iss and sub must both be the client id")
    if form.get("client_id") not in (None, client_id):
        raise _invalid_client("client_id does not match the client_assertion")
    client = get_client(conn, client_id)
    if client is None or not client.active or not client.jwks:
        raise _invalid_client()
    claims = None
    for key in client_keys(client, header.get("kid"), alg):
        try:
            claims = jwt.decode(
                assertion,
                key,
                algorithms=[alg],
                audience=token_url,
                options={"require": ["iss", "sub", "aud", "exp", "jti"], "verify_exp": False, "verify_iat": False, "verify_nbf": False},
            )
            break
        except jwt.InvalidAudienceError:
            raise _invalid_client("client_assertion aud must be the token endpoint URL") from None
        except jwt.MissingRequiredClaimError as exc:
            raise _invalid_client(f"client_assertion lacks the '{exc.claim}' claim") from None
        except jwt.InvalidTokenError:
            continue
    if claims is None:
        raise _invalid_client("client_assertion signature does not verify with the client's registered keys")
    exp = claims["exp"]
    if not isinstance(exp, (int, float)) or exp <= now:
        raise _invalid_client("client_assertion has expired")
    if exp > now + MAX_ASSERTION_LIFETIME + CLOCK_SKEW:
        raise _invalid_client(f"client_assertion exp may be at most {MAX_ASSERTION_LIFETIME} seconds ahead")
    nbf = claims.get("nbf")
    if isinstance(nbf, (int, float)) and nbf > now + CLOCK_SKEW:
        raise _invalid_client("client_assertion is not valid yet")
    jti = claims["jti"]
    if not isinstance(jti, str) or not jti or len(jti) > _MAX_JTI:
        raise _invalid_client(f"client_assertion jti must be a string of 1-{_MAX_JTI} characters")
    if not record_assertion_jti(conn, client_id, jti, int(exp * 1_000_000), int(now * 1_000_000)):
        raise _invalid_client("client_assertion jti has already been used")
    return client
