"""Sending one notification over HTTP to a checked address (no redirects, bounded answer).

The endpoint is resolved and checked (``endpoints.check``) right before each attempt and the
request goes to that very address: the URL carries the IP, ``Host`` the name, and for https the
TLS server name (SNI) and certificate check use the name (aiohttp's ``server_hostname``; the
session is the server's outbound one, ``fhir_server/outbound_http.py``). Environment proxies are
ignored (none is passed): a proxy would reach what the check refused.
The answer's body is never read: only its status counts (2xx: delivered), and on 429 and 503 its
``Retry-After`` (seconds or an HTTP date), which the worker waits for before the next attempt.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from dataclasses import dataclass

import aiohttp

from fhir_server.outbound_http import new_session
from fhir_server.subscriptions.endpoints import Network, Refused, Target, check


@dataclass(frozen=True)
class Sent:
    #: the HTTP status (None: no answer: refused, unreachable, timed out)
    status: int | None
    error: str | None = None
    #: seconds the receiver asked to wait (``Retry-After`` on 429 / 503)
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def refused(self) -> bool:
        return self.error is not None and self.error.startswith("refused:")


def new_client() -> aiohttp.ClientSession:
    """The deliveries' connection pool (made inside the worker's event loop; each delivery is
    bounded by :func:`send`'s own timeout)."""
    return new_session(limit=100)


def _pinned_url(target: Target, path: str) -> str:
    host = str(target.address)
    if target.address.version == 6:
        host = f"[{host}]"
    return f"{target.scheme}://{host}:{target.port}{path}"


async def send(
    client: aiohttp.ClientSession,
    url: str,
    allowed: tuple[Network, ...],
    *,
    method: str,
    headers: dict[str, str],
    body: bytes | None,
    timeout: float,
) -> Sent:
    try:
        async with asyncio.timeout(timeout):  # in all, also for a receiver trickling its answer
            return await _send(client, url, allowed, method=method, headers=headers, body=body)
    except TimeoutError:
        return Sent(None, f"no answer within {timeout:g} s")


async def _send(
    client: aiohttp.ClientSession,
    url: str,
    allowed: tuple[Network, ...],
    *,
    method: str,
    headers: dict[str, str],
    body: bytes | None,
) -> Sent:
    try:
        target = await check(url, allowed)
    except Refused as exc:
        return Sent(None, f"refused: {exc}")
    default_port = (target.scheme, target.port) in (("https", 443), ("http", 80))
    all_headers = {**headers, "Host": target.host if default_port else f"{target.host}:{target.port}"}
    try:
        async with client.request(
            method,
            _pinned_url(target, target.path),
            headers=all_headers,
            data=body,
            allow_redirects=False,
            server_hostname=target.host if target.scheme == "https" else None,
        ) as response:  # the body is never read: leaving the block drops the connection if one came
            status = response.status
            wait = retry_after(response.headers.get("Retry-After")) if status in (429, 503) else None
    except aiohttp.ClientError as exc:
        return Sent(None, f"{type(exc).__name__}: {exc}"[:500])
    if 300 <= status < 400:
        return Sent(status, f"HTTP {status}: redirects are not followed")
    if not 200 <= status < 300:
        return Sent(status, f"HTTP {status}" + (f" (Retry-After {wait:g} s)" if wait is not None else ""), wait)
    return Sent(status)


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delay-seconds or an HTTP date (RFC 9110
    10.2.3); None when absent or unreadable, 0 for a date in the past."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
