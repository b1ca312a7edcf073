"""Every FHIR request leaves an AuditEvent: a pure-ASGI wrapper that classifies the
request (interaction, type, id, query, operation), lets the app answer, and hands one
record to the buffered recorder (no I/O on the request path; see docs/audit.md)."""

from __future__ import annotations

from urllib.parse import unquote

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fhir_server.audit.events import AuditRecord
from fhir_server.audit.recorder import AuditRecorder

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


class AuditMiddleware:
    def __init__(self, app: ASGIApp, *, recorder_for: "callable") -> None:  # type: ignore[valid-type]
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
            recorder: AuditRecorder | None = self.recorder_for(scope)
            if recorder is not None:
                interaction, res_type, res_id, operation = classify(scope.get("method", "GET"), path)
                principal = (scope.get("state") or {}).get("principal")
                query = scope.get("query_string", b"").decode("latin-1")[:_QUERY_LIMIT] or None
                headers = dict(scope.get("headers") or [])
                client = scope.get("client")
                recorder.record(AuditRecord(
                    interaction=interaction, status=status, res_type=res_type, res_id=res_id, query=query,
                    operation=operation, client_id=getattr(principal, "client_id", None),
                    organization_id=getattr(principal, "organization_id", None),
                    address=client[0] if client else None,
                    user_agent=headers.get(b"user-agent", b"").decode("latin-1")[:200] or None,
                ))
