"""A small BPJS VClaim / P-Care HTTP client: signs each request and opens the encrypted envelope.

It returns the decrypted ``response`` JSON, which the mappings take as input. Transport is httpx; tests
pass an ``httpx.MockTransport`` or ``httpx.ASGITransport`` speaking the documented envelope.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from fhir_server.errors import FhirError
from mappings.vclaim_security import Credentials, headers, open_envelope, timestamp

VCLAIM_DEV = "https://apijkn-dev.bpjs-kesehatan.go.id/vclaim-rest-dev/"
PCARE_DEV = "https://apijkn-dev.bpjs-kesehatan.go.id/pcare-rest-dev/"


class BpjsClient:
    """Signed, decrypting calls to one BPJS service (VClaim, or P-Care with ``pcare=True``)."""

    def __init__(
        self,
        base_url: str,
        credentials: Credentials,
        *,
        pcare: bool = False,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.credentials = credentials
        self.pcare = pcare
        self._http = httpx.Client(base_url=base_url, transport=transport, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> BpjsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """One call; returns the decrypted ``response`` (FhirError on transport, HTTP or BPJS errors)."""
        ts = timestamp()
        h = headers(self.credentials, ts, pcare=self.pcare)
        content = None
        if body is None:
            h["Content-Type"] = "application/json"
        else:
            # BPJS wants this content type on writes although the body is JSON.
            h["Content-Type"] = "Application/x-www-form-urlencoded"
            content = json.dumps(body, separators=(",", ":")).encode()
        try:
            reply = self._http.request(method, path.lstrip("/"), headers=h, content=content)
        except httpx.HTTPError as exc:
            raise FhirError.of(502, "transient", f"BPJS request failed: {exc}") from exc
        try:
            envelope = reply.json()
        except ValueError:
            raise FhirError.of(502, "exception", f"BPJS answered HTTP {reply.status_code} without JSON") from None
        if not isinstance(envelope, dict):
            raise FhirError.of(502, "structure", "BPJS answered with a JSON value that is not an object")
        ok = ("200", "201") if self.pcare else ("200",)
        return open_envelope(envelope, self.credentials.cons_id, self.credentials.secret, ts, ok_codes=ok)

    # --- VClaim -------------------------------------------------------------------------------------
    def peserta_by_card(self, card: str, service_date: str) -> Any:
        return self.request("GET", f"Peserta/nokartu/{card}/tglSEP/{service_date}")

    def peserta_by_nik(self, nik: str, service_date: str) -> Any:
        return self.request("GET", f"Peserta/nik/{nik}/tglSEP/{service_date}")

    def insert_sep(self, sep_request: dict[str, Any]) -> Any:
        return self.request("POST", "SEP/2.0/insert", sep_request)

    # --- P-Care -------------------------------------------------------------------------------------
    def pcare_peserta(self, kind: str, number: str) -> Any:
        """``kind`` is "nik" or "noka"."""
        return self.request("GET", f"peserta/{kind}/{number}")

    def pcare_pendaftaran(self, body: dict[str, Any]) -> Any:
        return self.request("POST", "pendaftaran", body)

    def pcare_kunjungan(self, body: dict[str, Any]) -> Any:
        return self.request("POST", "kunjungan", body)
