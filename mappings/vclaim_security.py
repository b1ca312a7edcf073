"""BPJS VClaim / P-Care request signing and response decryption.

Signing: ``X-signature = base64(HMAC-SHA256(key=secret, msg="{consid}&{timestamp}"))`` with the Unix
timestamp (seconds, UTC) sent as ``X-timestamp``. Responses: ``response`` is base64 of AES-256-CBC
ciphertext whose key is ``SHA-256(consid + secret + timestamp)`` (the same timestamp that was sent) and
whose IV is the first 16 bytes of that key; the plaintext is LZ-String (URI-safe) compressed JSON.
The encrypting side is here too, for the local stand-in server in the tests.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from fhir_server.errors import FhirError
from mappings.lzstring import compress_to_encoded_uri_component, decompress_from_encoded_uri_component


@dataclass(frozen=True, slots=True)
class Credentials:
    """What BPJS issues to a facility. ``user_key`` is per service (VClaim, P-Care, Antrean)."""

    cons_id: str
    secret: str
    user_key: str = ""
    pcare_username: str = ""
    pcare_password: str = ""
    pcare_app_code: str = "095"


def timestamp(now: float | None = None) -> str:
    """X-timestamp: whole seconds since the Unix epoch, UTC."""
    return str(int(time.time() if now is None else now))


def signature(cons_id: str, secret: str, ts: str) -> str:
    """X-signature for ``cons_id`` at ``ts``."""
    digest = hmac.new(secret.encode(), f"{cons_id}&{ts}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def headers(creds: Credentials, ts: str | None = None, *, pcare: bool = False) -> dict[str, str]:
    """The BPJS authentication headers for one request (P-Care adds X-authorization)."""
    ts = ts or timestamp()
    out = {
        "X-cons-id": creds.cons_id,
        "X-timestamp": ts,
        "X-signature": signature(creds.cons_id, creds.secret, ts),
    }
    if creds.user_key:
        out["user_key"] = creds.user_key
    if pcare:
        basic = f"{creds.pcare_username}:{creds.pcare_password}:{creds.pcare_app_code}"
        out["X-authorization"] = "Basic " + base64.b64encode(basic.encode()).decode("ascii")
    return out


def _key_iv(cons_id: str, secret: str, ts: str) -> tuple[bytes, bytes]:
    key = hashlib.sha256(f"{cons_id}{secret}{ts}".encode()).digest()
    return key, key[:16]


def decrypt(payload: str, cons_id: str, secret: str, ts: str) -> str:
    """Decrypt a ``response`` string to its JSON text; FhirError 502 when it cannot be decrypted."""
    key, iv = _key_iv(cons_id, secret, ts)
    try:
        raw = base64.b64decode(payload.replace("\\/", "/"), validate=False)
        decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
        padded = decryptor.update(raw) + decryptor.finalize()
        unpadder = padding.PKCS7(128).unpadder()
        compressed = (unpadder.update(padded) + unpadder.finalize()).decode("utf-8")
        return decompress_from_encoded_uri_component(compressed)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise FhirError.of(502, "exception", f"BPJS response could not be decrypted: {exc}", "response") from exc


def encrypt(plaintext: str, cons_id: str, secret: str, ts: str) -> str:
    """The inverse of :func:`decrypt` (what BPJS does; used by test stand-ins)."""
    key, iv = _key_iv(cons_id, secret, ts)
    padder = padding.PKCS7(128).padder()
    data = padder.update(compress_to_encoded_uri_component(plaintext).encode("utf-8")) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return base64.b64encode(encryptor.update(data) + encryptor.finalize()).decode("ascii")


def open_envelope(body: dict[str, Any], cons_id: str, secret: str, ts: str, ok_codes: tuple[str, ...] = ("200",)) -> Any:
    """The decrypted ``response`` of a BPJS envelope ``{metaData:{code,message}, response}``.

    A ``metaData.code`` (a string in VClaim, an int in P-Care) outside ``ok_codes`` becomes a FhirError
    carrying the BPJS message (404 for "tidak ditemukan", else 422); P-Care also answers 201 on success.
    An unencrypted (dict/list/None) response is returned as it is.
    """
    meta = body.get("metaData") or body.get("metadata")
    if not isinstance(meta, dict):
        raise FhirError.of(502, "structure", "BPJS response has no metaData", "metaData")
    code = str(meta.get("code", "")).strip()
    message = str(meta.get("message", ""))
    if code not in ok_codes:
        status = 404 if "tidak ditemukan" in message.lower() else 422
        raise FhirError.of(status, "processing", f"BPJS metaData.code {code}: {message}", "metaData.code")
    response = body.get("response")
    if not isinstance(response, str):
        return response
    text = decrypt(response, cons_id, secret, ts)
    try:
        return json.loads(text)
    except ValueError as exc:
        raise FhirError.of(502, "exception", "decrypted BPJS response is not JSON", "response") from exc
