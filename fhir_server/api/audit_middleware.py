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


def is_audited(path: str) -> bool:
    """Whether a request to ``path`` leaves an AuditEvent: the FHIR API, but not its discovery endpoints."""
    return path.startswith("/fhir") and not path.startswith(_NOT_AUDITED)


def queue_request(recorder: AuditRecorder | None, scope: Scope, status: int) -> None:
    """Queue the AuditEvent of a finished request (``status``: its HTTP status, 500 if none was sent)."""
    if recorder is None:
        return
    # subscripts where the ASGI spec guarantees the key: cheaper than .get() on every request
    user_agent = request_id = None
    for name, value in scope["headers"]:
        if name == b"user-agent":
            user_agent = value
        elif name == b"x-request-id":
            request_id = value
    state = scope.get("state")
    if state is None:
        principal = None
    elif "audited" in state:  # a write whose AuditEvent was committed with it (service/pipeline.py)
        return
    else:
        principal = state.get("principal")
    client = scope.get("client")
    # only atomic values (str, bytes, int, None): see request_rows.RawRequest
    recorder.record(
        (
            time_ns(),
            status,
            scope["method"],
            scope["path"],
            scope["query_string"],
            user_agent,
            request_id,
            client[0] if client else None,
            principal.client_id if principal is not None else None,  # "anonymous" is stored as NULL (request_rows)
            principal.organization_id if principal is not None else None,
        )
    )


class AuditMiddleware:
    """The audit trail as a layer of its own. The app does not use it: ``RequestGuard``
    records through :func:`queue_request` in its own layer (one ASGI layer less
    per request, ~1.5 µs); this class is for other compositions and tests."""

    def __init__(self, app: ASGIApp, *, recorder_for: Callable[[Scope], AuditRecorder | None]) -> None:
        self.app = app
        self.recorder_for = recorder_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_audited(scope["path"]):
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
            queue_request(self.recorder_for(scope), scope, status)
