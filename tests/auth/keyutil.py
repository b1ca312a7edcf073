"""Helpers: JWKs of test keys and signed client assertions."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

TOKEN_URL = "http://testserver/fhir/auth/token"


def public_jwk(private_key: Any, kid: str) -> dict[str, Any]:
    public = private_key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(public))
        jwk["alg"] = "RS384"
    else:
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(public))
        jwk["alg"] = "ES384"
    jwk["kid"] = kid
    return jwk


def private_jwk(private_key: Any) -> dict[str, Any]:
    if isinstance(private_key, rsa.RSAPrivateKey):
        return json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private_key))
    return json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private_key))


def public_pem(private_key: Any) -> str:
    return (
        private_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")
    )


def assertion(
    private_key: Any,
    client_id: str,
    *,
    alg: str,
    kid: str | None,
    aud: str = TOKEN_URL,
    now: float | None = None,
    lifetime: int = 240,
    jti: str | None = None,
    **overrides: Any,
) -> str:
    iat = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "iss": client_id,
        "sub": client_id,
        "aud": aud,
        "exp": iat + lifetime,
        "iat": iat,
        "jti": jti or uuid.uuid4().hex,
    }
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    headers = {"kid": kid} if kid else {}
    return jwt.encode(claims, private_key, algorithm=alg, headers=headers)
