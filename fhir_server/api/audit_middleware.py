"""Every FHIR request leaves an AuditEvent: a pure-ASGI wrapper that classifies the
request (interaction, type, id, query, operation), lets the app answer, and hands one
record to the buffered recorder (no I/O on the request path; see docs/audit.md)."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import unquote

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fhir_server.audit.recorder import AuditRecorder
from fhir_server.timeutil import now_us

_NOT_AUDITED = ("/fhir/metadata", "/fhir/.well-known/smart-configuration", "/fhir/auth/token")
_QUERY_LIMIT = 2000


def classify(method: str, path: str) -> tuple[str, str | None, str | None, str | None]:
    """(interaction, resource type, id, operation) of a request under ``/fhir``."""
    parts = [unquote(p) for p in path.split("/")[2:] if p]  # after "" and "fhir"
    operation = next((p[1:] for p in parts if p.startswith("$")), None)
    if operation is not None:
        head = parts[: parts.index("$" + operation)]
        return "operation", (head[0] if head else None), (head[1] if len(head) > 1 else None), operation
    if not parts:
        return ("transaction" if method == "POST" else "search-system"), None, None, None
    if parts[0] == "_history":
        return "history-system", None, None, None
    res_type = parts[0]
    if len(parts) == 1:
        kind = {"GET": "search-type", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(method, "read")
        return kind, res_type, None, None
    if parts[1] == "_search":
        return "search-type", res_type, None, None
    if parts[1] == "_history":
        return "history-type", res_type, None, None
    res_id = parts[1]
    if len(parts) >= 3 and parts[2] == "_history":
        return ("vread" if len(parts) > 3 else "history-instance"), res_type, res_id, None
    kind = {"GET": "read", "HEAD": "read", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(method, "read")
    return kind, res_type, res_id, None


class RequestEvent:
    """What the request path keeps of a request for its AuditEvent: raw fields only.

    The recorder reads the :class:`AuditRecord` attributes from it on its own
    thread, so classifying the request, decoding the query and reading headers
    happen off the request path (a read by id costs ~100 µs; the audit budget is 10%).
    """

    __slots__ = ("_method", "_path", "_query", "status", "_principal", "_client", "_headers", "recorded_us", "_kind")
    event_id = None
    action = None
    request_id = None

    def __init__(self, scope: Scope, status: int) -> None:
        self._method = scope.get("method", "GET")
        self._path = scope.get("path", "")
        self._query = scope.get("query_string", b"")
        self.status = status
        self._principal = (scope.get("state") or {}).get("principal")
        self._client = scope.get("client")
        self._headers = scope.get("headers") or []
        self.recorded_us = now_us()
        self._kind: tuple[str, str | None, str | None, str | None] | None = None

    def _classified(self) -> tuple[str, str | None, str | None, str | None]:
        if self._kind is None:
            self._kind = classify(self._method, self._path)
        return self._kind

    @property
    def interaction(self) -> str:
        return self._classified()[0]

    @property
    def res_type(self) -> str | None:
        return self._classified()[1]

    @property
    def res_id(self) -> str | None:
        return self._classified()[2]

    @property
    def operation(self) -> str | None:
        return self._classified()[3]

    @property
    def query(self) -> str | None:
        return self._query.decode("latin-1")[:_QUERY_LIMIT] or None

    @property
    def client_id(self) -> str | None:
        return getattr(self._principal, "client_id", None)

    @property
    def organization_id(self) -> str | None:
        return getattr(self._principal, "organization_id", None)

    @property
    def address(self) -> str | None:
        return self._client[0] if self._client else None

    @property
    def user_agent(self) -> str | None:
        return next((v.decode("latin-1")[:200] for k, v in self._headers if k == b"user-agent"), None)


class AuditMiddleware:
    def __init__(self, app: ASGIApp, *, recorder_for: Callable[[Scope], AuditRecorder | None]) -> None:
        self.app = app
        self.recorder_for = recorder_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path.startswith("/fhir") or path.startswith(_NOT_AUDITED):
            await self.app(scope, receive, send)
            return
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            recorder = self.recorder_for(scope)
            if recorder is not None:
                recorder.record(RequestEvent(scope, status))  # type: ignore[arg-type]  (duck-typed AuditRecord)
