"""Registered clients: registration, listing, revocation, secret and key checks.

Secrets are generated here (256 random bits), shown to the operator once and
stored only as a salted scrypt hash. Keys for ``private_key_jwt`` are stored
as a public JSON Web Key Set (RSA of at least 2048 bits or EC P-384); private
key material is refused.

Every function takes an open SQLAlchemy connection inside the caller's
transaction; nothing here commits.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import jwt
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from fhir_server.audit.events import ANONYMOUS
from fhir_server.storage.auth_tables import auth_clients, auth_used_jtis
from fhir_server.timeutil import now_us as _now_us

from .scopes import ScopeSet, validate_client_scopes

# scrypt cost: the interactive-login parameters of the scrypt paper (16 MiB, ~50-150 ms).
# Generated secrets carry 256 bits of entropy, so this guards against a leaked
# table rather than against guessing.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1
_HASH_BYTES = 32
_CLIENT_ID = re.compile(r"[A-Za-z0-9._~-]{1,128}")
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
#: private members of RSA / EC / symmetric JWKs: never stored
_PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}
SIGNING_ALGS = ("RS384", "ES384")


class ClientError(ValueError):
    """A registration or management request that cannot be carried out."""


@dataclass(frozen=True)
class Client:
    client_id: str
    name: str
    scopes: tuple[str, ...]
    organization_id: str | None
    active: bool
    created_us: int
    revoked_us: int | None
    jwks: dict[str, Any] | None = None
    secret_hash: str | None = field(default=None, repr=False)

    @property
    def has_secret(self) -> bool:
        return self.secret_hash is not None

    @property
    def scope_set(self) -> ScopeSet:
        return ScopeSet.parse(self.scopes)

    @property
    def auth_methods(self) -> tuple[str, ...]:
        methods = []
        if self.has_secret:
            methods += ["client_secret_basic", "client_secret_post"]
        if self.jwks:
            methods.append("private_key_jwt")
        return tuple(methods)


# ---------------------------------------------------------------- secrets


def new_client_id() -> str:
    """A random client id that never starts with ``-`` (a command line would take it for an
    option: ``fhir-server clients revoke -x...`` failed, 1 generated id in 32)."""
    while True:
        client_id = secrets.token_urlsafe(24)
        if not client_id.startswith("-"):
            return client_id


def generate_secret() -> str:
    return secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    """``scrypt$N$r$p$salt$hash`` (base64url, no padding) with a fresh random salt."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(secret, salt, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P)
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_secret(secret: str, encoded: str | None) -> bool:
    """Whether ``secret`` matches the stored hash, in constant time.

    With ``encoded`` None (unknown client, or a client without a secret) the
    same amount of work is done, so response times do not reveal which
    client ids exist.
    """
    if encoded is None:
        _scrypt(secret, b"\0" * 16, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P)
        return False
    try:
        scheme, n, r, p, salt, expected = encoded.split("$")
        if scheme != "scrypt":
            return False
        actual = _scrypt(secret, _unb64(salt), int(n), int(r), int(p))
        return hmac.compare_digest(actual, _unb64(expected))
    except ValueError:
        return False


def _scrypt(secret: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(secret.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=_HASH_BYTES, maxmem=128 * n * r * p + 1024 * 1024)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# ---------------------------------------------------------------- keys


def load_jwks_text(text: str) -> dict[str, Any]:
    """A client's public keys from a JWKS, a single JWK or PEM public key(s); validated.

    PEM keys are converted to JWKs whose ``kid`` is the RFC 7638 thumbprint.
    """
    stripped = text.strip()
    if stripped.startswith("-----BEGIN"):
        return validate_jwks({"keys": [_pem_to_jwk(block) for block in _pem_blocks(stripped)]})
    try:
        data = json.loads(stripped)
    except ValueError as exc:
        raise ClientError(f"the key file is neither JSON (JWKS / JWK) nor PEM: {exc}") from None
    return validate_jwks(data)


def validate_jwks(data: Any) -> dict[str, Any]:
    """The JWKS ``{"keys": [...]}`` (a bare JWK is wrapped) after checking every key.

    Accepted: RSA public keys of 2048 bits or more (RS384) and EC P-384 public
    keys (ES384). Private key material, symmetric keys and other algorithms
    are refused.
    """
    if isinstance(data, dict) and "keys" not in data and "kty" in data:
        data = {"keys": [data]}
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list) or not data["keys"]:
        raise ClientError("a JWKS must be an object with a non-empty 'keys' array")
    keys = []
    for i, jwk in enumerate(data["keys"]):
        if not isinstance(jwk, dict):
            raise ClientError(f"key {i} is not a JSON object")
        if _PRIVATE_MEMBERS & jwk.keys():
            raise ClientError(f"key {i} contains private key material: register the public key only")
        kty = jwk.get("kty")
        if kty == "RSA":
            alg = "RS384"
        elif kty == "EC" and jwk.get("crv") == "P-384":
            alg = "ES384"
        else:
            raise ClientError(f"key {i}: only RSA (RS384) and EC P-384 (ES384) keys are supported")
        if jwk.get("alg", alg) != alg:
            raise ClientError(f"key {i}: algorithm {jwk['alg']!r} is not supported (use {alg})")
        try:
            public = jwt.PyJWK(jwk, algorithm=alg).key
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError) as exc:
            raise ClientError(f"key {i} is not a valid {alg} public key: {exc}") from None
        if kty == "RSA" and public.key_size < 2048:
            raise ClientError(f"key {i}: RSA keys must have at least 2048 bits")
        keys.append(jwk)
    return {"keys": keys}


def client_keys(client: Client, kid: str | None, alg: str) -> list[Any]:
    """The client's public keys that may have signed an assertion with header ``kid`` and ``alg``."""
    out = []
    for jwk in (client.jwks or {}).get("keys", []):
        key_alg = "RS384" if jwk.get("kty") == "RSA" else "ES384"
        if key_alg != alg or (kid is not None and jwk.get("kid") not in (None, kid)):
            continue
        if jwk.get("use", "sig") != "sig":
            continue
        out.append(jwt.PyJWK(jwk, algorithm=alg).key)
    return out


def _pem_blocks(text: str) -> list[str]:
    blocks = re.findall(r"-----BEGIN [A-Z ]+-----.*?-----END [A-Z ]+-----", text, flags=re.S)
    if not blocks:
        raise ClientError("no PEM block found")
    return blocks


def _pem_to_jwk(block: str) -> dict[str, Any]:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    if "PRIVATE KEY" in block:
        raise ClientError("a private key was given: register the public key only")
    try:
        public = load_pem_public_key(block.encode("ascii"))
    except ValueError as exc:
        raise ClientError(f"not a PEM public key: {exc}") from None
    if isinstance(public, rsa.RSAPublicKey):
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(public))
        jwk["alg"] = "RS384"
    elif isinstance(public, ec.EllipticCurvePublicKey):
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(public))
        jwk["alg"] = "ES384"
    else:
        raise ClientError("only RSA and EC P-384 public keys are supported")
    jwk["kid"] = jwk_thumbprint(jwk)
    jwk["use"] = "sig"
    return jwk


def jwk_thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 SHA-256 thumbprint (base64url) of an RSA or EC public JWK."""
    members = ("e", "kty", "n") if jwk["kty"] == "RSA" else ("crv", "kty", "x", "y")
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return _b64(hashlib.sha256(canonical.encode("utf-8")).digest())


# ---------------------------------------------------------------- storage


def add_client(
    conn: Connection,
    *,
    name: str,
    scopes: str | Iterable[str],
    jwks: dict[str, Any] | None = None,
    organization_id: str | None = None,
    with_secret: bool | None = None,
    client_id: str | None = None,
    now_us: int | None = None,
) -> tuple[str, str | None]:
    """Register a client; returns ``(client_id, secret)`` (secret None for key-only clients).

    ``with_secret`` defaults to "yes unless a JWKS is given". The secret is
    returned once and only its hash is stored. Raises :class:`ClientError`.
    """
    name = name.strip()
    if not name:
        raise ClientError("a client needs a name")
    try:
        scope_list = validate_client_scopes(scopes)
    except ValueError as exc:
        raise ClientError(str(exc)) from None
    if jwks is not None:
        jwks = validate_jwks(jwks)
    if with_secret is None:
        with_secret = jwks is None
    if not with_secret and jwks is None:
        raise ClientError("a client needs a secret or a JWKS to authenticate with")
    if organization_id is not None:
        organization_id = organization_id.strip().removeprefix("Organization/")
        if not _FHIR_ID.fullmatch(organization_id):
            raise ClientError(f"'{organization_id}' is not a valid Organization id")
    if client_id is None:
        client_id = new_client_id()
    elif not _CLIENT_ID.fullmatch(client_id):
        raise ClientError("a client id is 1-128 characters of A-Z a-z 0-9 . _ ~ -")
    elif client_id == ANONYMOUS:
        raise ClientError(f"'{ANONYMOUS}' is reserved: the audit trail's name for requests without a client")
    secret = generate_secret() if with_secret else None
    try:
        with conn.begin_nested():
            conn.execute(
                auth_clients.insert().values(
                    client_id=client_id,
                    name=name,
                    secret_hash=hash_secret(secret) if secret is not None else None,
                    scopes=" ".join(scope_list),
                    jwks=json.dumps(jwks, separators=(",", ":")) if jwks is not None else None,
                    organization_id=organization_id,
                    active=True,
                    created_us=_now_us() if now_us is None else now_us,
                )
            )
    except IntegrityError:
        raise ClientError(f"client id '{client_id}' is already registered") from None
    return client_id, secret


def get_client(conn: Connection, client_id: str) -> Client | None:
    row = conn.execute(sa.select(auth_clients).where(auth_clients.c.client_id == client_id)).mappings().first()
    return _client(row) if row is not None else None


def list_clients(conn: Connection) -> list[Client]:
    """Every registered client, revoked ones included, oldest first."""
    rows = conn.execute(sa.select(auth_clients).order_by(auth_clients.c.created_us, auth_clients.c.client_id))
    return [_client(row) for row in rows.mappings()]


def revoke_client(conn: Connection, client_id: str, now_us: int | None = None) -> bool:
    """Deactivate a client: it gets no new tokens. False if no such client.

    Tokens already issued stay valid until they expire (at most the token
    lifetime): verification does not consult the database.
    """
    result = conn.execute(
        auth_clients.update()
        .where(auth_clients.c.client_id == client_id)
        .values(active=False, revoked_us=sa.func.coalesce(auth_clients.c.revoked_us, _now_us() if now_us is None else now_us))
    )
    return result.rowcount > 0


def record_assertion_jti(conn: Connection, client_id: str, jti: str, expires_us: int, now_us: int) -> bool:
    """Remember a client assertion's ``jti`` until it expires; False if it was already used.

    The primary key decides, so a replay racing the original on another
    worker loses too. Expired entries are purged on the way.
    """
    conn.execute(auth_used_jtis.delete().where(auth_used_jtis.c.expires_us < now_us))
    try:
        with conn.begin_nested():
            conn.execute(auth_used_jtis.insert().values(client_id=client_id, jti=jti, expires_us=expires_us))
    except IntegrityError:
        return False
    return True


def _client(row: Any) -> Client:
    return Client(
        client_id=row["client_id"],
        name=row["name"],
        scopes=tuple(row["scopes"].split()),
        organization_id=row["organization_id"],
        active=bool(row["active"]),
        created_us=row["created_us"],
        revoked_us=row["revoked_us"],
        jwks=json.loads(row["jwks"]) if row["jwks"] else None,
        secret_hash=row["secret_hash"],
    )
