"""A pure-ASGI guard in front of the app: query-string limits, security headers
and the audit trail.

It runs before routing so that no handler, search parser or database driver
ever sees a query with control characters (PostgreSQL refuses NUL bytes with
an error, which must not become a 500), thousands of parameters or a
megabyte-long query string. Every response also gets the security headers.

It is the outermost layer of the app and also queues each FHIR request's
AuditEvent (``audit_for``; see ``api.audit_middleware.queue_request``): in this
layer rather than one of its own, because an ASGI layer costs ~1 µs per request
(a read by id is ~25 µs in the app), and this layer already sees the status.
Requests it refuses are audited like any other.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fhir_server import jsonio
from fhir_server.api.audit_middleware import is_audited, queue_request
from fhir_server.audit.recorder import AuditRecorder
from fhir_server.errors import error, operation_outcome

# control characters (tab, LF and CR allowed) raw or percent-encoded: the same verdict as
# searching the unquoted query, without unquoting it first (a Python loop over every escape)
_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|%(?:0[0-8bBcCeEfF]|1[0-9a-fA-F]|7[fF])")
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    # health data: never cached by shared caches
    (b"cache-control", b"no-store"),
]
_FHIR_ONLY = [(b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")]
_FHIR_EXTRA = SECURITY_HEADERS + _FHIR_ONLY
#: the names a response may already carry (then its own value wins)
_EXTRA_NAMES = frozenset(name for name, _ in _FHIR_EXTRA)


Headers = list[tuple[bytes, bytes]]


def with_security_headers(headers: Headers, extra: Headers) -> Headers:
    """``headers`` and the ``extra`` ones it does not set itself. Usually it sets none of them:
    then no set of its names is built (once per response, ~1 µs)."""
    for name, _ in headers:
        if name.lower() in _EXTRA_NAMES:
            names = {k.lower() for k, _ in headers}
            return [*headers, *[(k, v) for k, v in extra if k not in names]]
    return [*headers, *extra]


class RequestGuard:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_query_params: int,
        max_query_bytes: int,
        audit_for: Callable[[Scope], AuditRecorder | None] | None = None,
    ) -> None:
        self.app = app
        self.max_query_params = max_query_params
        self.max_query_bytes = max_query_bytes
        self.audit_for = audit_for  # None: no audit trail

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        problem = self._check(scope.get("query_string", b""))
        fhir = path.startswith("/fhir")
        extra = _FHIR_EXTRA if fhir else SECURITY_HEADERS
        status = 500  # for the audit trail: stays so when the app fails before answering

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                nonlocal status
                status = message["status"]
                message["headers"] = with_security_headers(message.get("headers") or [], extra)
            await send(message)

        try:
            if problem is not None:
                code, issue = problem
                body = jsonio.dumps(operation_outcome([issue]))
                await send_with_headers(
                    {
                        "type": "http.response.start",
                        "status": code,
                        "headers": [
                            (b"content-type", b"application/fhir+json; charset=utf-8"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send_with_headers({"type": "http.response.body", "body": body})
                return
            await self.app(scope, receive, send_with_headers)
        finally:
            if self.audit_for is not None and fhir and is_audited(path):
                queue_request(self.audit_for(scope), scope, status)

    def _check(self, query: bytes) -> tuple[int, Any] | None:
        if not query:
            return None
        if len(query) > self.max_query_bytes:
            return 414, error("too-costly", f"The query string is longer than {self.max_query_bytes} bytes (FHIR_MAX_QUERY_BYTES)")
        if query.count(b"&") + 1 > self.max_query_params:
            return 400, error("too-costly", f"More than {self.max_query_params} query parameters (FHIR_MAX_QUERY_PARAMS)")
        if _CONTROL.search(query):
            return 400, error("invalid", "The query contains control characters (such as NUL)")
        return None
