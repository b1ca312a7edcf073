"""Every FHIR request leaves an AuditEvent: a pure-ASGI wrapper that notes the
response status, lets the app answer, and queues one plain tuple of the
request's raw fields (``fhir_server.audit.request_rows.RawRequest``) with the
buffered recorder. Classifying the request, decoding and cleaning its fields
happen on the recorder's thread (see docs/audit.md): a read by id costs ~50 µs,
the whole audit budget is ~5 µs, so the request path does the least it can.

The tuple holds only str, bytes, int and None, never the scope's dicts and
lists: a queued event lives ~0.2 s, and containers kept that long are promoted
by the garbage collector into the old generations, whose full collections over
the whole heap then cost more than the rest of the audit trail (measured
~2.6 µs per request with the scope's header list and state dict queued)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from time import time_ns

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fhir_server.audit.recorder import AuditRecorder
from fhir_server.audit.request_rows import classify  # noqa: F401  (re-exported: it used to live here)

_NOT_AUDITED = ("/fhir/metadata", "/fhir/.well-known/smart-configuration", "/fhir/auth/token")


class AuditMiddleware:
    def __init__(self, app: ASGIApp, *, recorder_for: Callable[[Scope], AuditRecorder | None]) -> None:
        self.app = app
        self.recorder_for = recorder_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if not path.startswith("/fhir") or path.startswith(_NOT_AUDITED):
            await self.app(scope, receive, send)
            return
        status = 500  # stays so when the app fails before answering

        # a plain function returning send's awaitable: no coroutine of its own per message
        def capture(message: Message) -> Awaitable[None]:
            if message["type"] == "http.response.start":
                nonlocal status
                status = message["status"]
            return send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            recorder = self.recorder_for(scope)
            if recorder is not None:
                user_agent = request_id = None
                for name, value in scope.get("headers") or ():
                    if name == b"user-agent":
                        user_agent = value
                    elif name == b"x-request-id":
                        request_id = value
                state = scope.get("state")
                principal = state.get("principal") if state else None
                client = scope.get("client")
                # only atomic values (str, bytes, int, None): see request_rows.RawRequest
                recorder.record((
                    time_ns(), status, scope["method"], path, scope.get("query_string", b""), user_agent, request_id,
                    client[0] if client else None,
                    principal.client_id if principal is not None else None,
                    principal.organization_id if principal is not None else None,
                ))
