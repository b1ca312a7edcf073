"""Talking to SATUSEHAT over HTTP: the token (OAuth2 client credentials) and FHIR calls.

The token is kept per facility in this process and fetched again ``refresh_margin`` seconds
before ``expires_in`` runs out (SATUSEHAT sends it as a string, "3599") and after any 401. Every
call answers a :class:`Reply` and never raises for HTTP trouble: ``status`` None means no answer
(network error, timeout, connection dropped), which for a create means it may have happened.

The session is the server's outbound one (``fhir_server/outbound_http.py``), with the environment's
proxy: hospital networks often reach the internet through one.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import aiohttp

from fhir_server import jsonio
from fhir_server.outbound_http import environment_proxy, new_session
from fhir_server.satusehat.facility import Facility

#: statuses worth trying again later (bridge practice and the reference: 408, 429, 5xx)
RETRIABLE = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Reply:
    #: the HTTP status (None: no answer)
    status: int | None
    body: Any = None
    text: str = ""
    #: seconds the server asked us to wait (429 Retry-After)
    retry_after: float | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def retriable(self) -> bool:
        return self.status is None or self.status in RETRIABLE

    def describe(self) -> str:
        if self.status is None:
            return f"no answer from SATUSEHAT: {self.error}"
        detail = self.text[:300] if not isinstance(self.body, dict) else _outcome_text(self.body)
        return f"SATUSEHAT answered {self.status}: {detail}".rstrip(": ")


def _outcome_text(body: dict[str, Any]) -> str:
    texts = []
    for issue in body.get("issue") or []:
        if isinstance(issue, dict):
            texts.append(((issue.get("details") or {}).get("text")) or issue.get("diagnostics") or issue.get("code") or "")
    return "; ".join(t for t in texts if t)[:1000]


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


class SatusehatClient:
    """One facility's connection; safe to share between the tasks of one event loop."""

    def __init__(self, facility: Facility, *, timeout: float = 30.0, refresh_margin: float = 300.0) -> None:
        self.facility = facility
        self.timeout = timeout
        self.refresh_margin = refresh_margin
        # created on first use: a session belongs to the event loop it was made in
        self._session: aiohttp.ClientSession | None = None
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()
        #: tokens fetched so far (the tests check refreshing)
        self.tokens_fetched = 0

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            # the whole call bounded, so that it ends well inside the worker's lease
            self._session = new_session(timeout=self.timeout, proxy=environment_proxy(self.facility.base))
        return self._session

    def forget_token(self, token: str | None) -> None:
        if token is not None and token == self._token:
            self._token = None

    async def token(self) -> tuple[str | None, Reply | None]:
        """A valid access token, or the failed reply of the token endpoint."""
        async with self._lock:
            if self._token is not None and time.monotonic() < self._expires_at:
                return self._token, None
            f = self.facility
            reply = await self._send(
                "POST",
                f"{f.token_url}?grant_type=client_credentials",
                content=f"client_id={quote(f.client_id, safe='')}&client_secret={quote(f.client_secret, safe='')}".encode(),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            body = reply.body if isinstance(reply.body, dict) else {}
            if not reply.ok or not body.get("access_token"):
                return None, reply
            try:
                lifetime = float(str(body.get("expires_in", "3599")))
            except ValueError:
                lifetime = 3599.0
            self._token = str(body["access_token"])
            # fetched again before it runs out (a third of a short lifetime at most)
            self._expires_at = time.monotonic() + max(0.0, lifetime - min(self.refresh_margin, lifetime / 3))
            self.tokens_fetched += 1
            return self._token, None

    async def call(self, method: str, path: str, body: Any = None) -> Reply:
        """A FHIR call with the token: fetched again and the call repeated once on a 401."""
        for attempt in range(2):
            token, failed = await self.token()
            if token is None:
                assert failed is not None
                return failed
            headers = {"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"}
            content = None
            if body is not None:
                headers["Content-Type"] = "application/fhir+json"
                content = jsonio.dumps(body)
            reply = await self._send(method, f"{self.facility.fhir_url}/{path}", content=content, headers=headers)
            if reply.status == 401 and attempt == 0:
                self.forget_token(token)
                continue
            return reply
        raise AssertionError("unreachable")

    async def _send(self, method: str, url: str, *, content: bytes | None, headers: dict[str, str]) -> Reply:
        try:
            async with self._http().request(method, url, data=content, headers=headers, allow_redirects=False) as r:
                raw = await r.read()
                status, content_type, retry_after = r.status, r.headers.get("Content-Type") or "", r.headers.get("Retry-After")
        except (aiohttp.ClientError, TimeoutError) as exc:
            return Reply(None, error=f"{type(exc).__name__}: {exc}"[:300] or type(exc).__name__)
        text = raw.decode("utf-8", "replace")
        parsed: Any = None
        if "json" in content_type:
            try:
                parsed = jsonio.loads(raw)
            except ValueError:
                parsed = None
        return Reply(status, parsed, text, _retry_after(retry_after))

    async def search(self, res_type: str, system: str, value: str) -> Reply:
        return await self.call("GET", f"{res_type}?identifier={quote(system, safe='')}%7C{quote(value, safe='')}")


def first_id(reply: Reply) -> str | None:
    """The id of the first entry of a searchset answer (None: no match)."""
    body = reply.body if isinstance(reply.body, dict) else {}
    for entry in body.get("entry") or []:
        res = (entry or {}).get("resource") or {}
        if res.get("id"):
            return str(res["id"])
    return None
