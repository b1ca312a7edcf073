"""The console's only way to FHIR data: an :class:`Interaction` by the viewer's principal,
handed to the one pipeline, and an AuditEvent with the viewer as the agent.

A write records its AuditEvent in its own transaction (the pipeline's writer, like every API
write); anything else is queued with the recorder once answered, refusals included. The
AuditEvent describes the FHIR interaction the console made (``GET /fhir/Patient?identifier=``),
so the audit trail reads the same whether a person or a client asked.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import Request

from fhir_server import jsonio
from fhir_server.api import http
from fhir_server.errors import FhirError
from fhir_server.service.pipeline import Answer, AuditContext, Interaction

from .session import Viewer


def _path(res_type: str | None, res_id: str | None, operation: str | None) -> str:
    parts = ["/fhir", *(p for p in (res_type, res_id) if p)]
    if operation:
        parts.append("$" + operation)
    return "/".join(parts)


async def call(
    request: Request,
    viewer: Viewer,
    kind: str,
    res_type: str | None = None,
    res_id: str | None = None,
    *,
    params: list[tuple[str, str]] | None = None,
    body: Any = None,
    operation: str | None = None,
    method: str = "GET",
) -> Answer:
    """Run one interaction for ``viewer``; FhirError (401/403/404/422 ...) as the API raises it."""
    st = request.app.state.fhir
    params = params or []
    client = request.scope.get("client")
    user_agent = request.headers.get("user-agent")
    audit = AuditContext(
        method,
        _path(res_type, res_id, operation),
        urlencode(params).encode(),
        user_agent.encode("latin-1", "replace") if user_agent else None,
        None,
        client[0] if client else None,
    )
    i = Interaction(
        kind,
        http.base_url(request, st.settings.base_url),
        viewer.principal,
        res_type,
        res_id,
        params=params,
        body=body,
        operation=operation,
        method=method,
        headers={},
        audit=audit,
    )
    status = 500
    try:
        answer = await st.pipeline.handle(i)
        status = answer.status
        return answer
    except FhirError as exc:
        status = exc.status
        raise
    finally:
        if not i.audited and st.recorder is not None:
            st.recorder.record(audit.record(viewer.principal, status, None))


async def search(request: Request, viewer: Viewer, res_type: str, params: list[tuple[str, str]]) -> dict[str, Any]:
    """A type-level search's Bundle, parsed."""
    answer = await call(request, viewer, "search-type", res_type, params=params)
    return jsonio.loads(answer.body or b"{}")


async def read(request: Request, viewer: Viewer, res_type: str, res_id: str) -> dict[str, Any]:
    answer = await call(request, viewer, "read", res_type, res_id)
    return jsonio.loads(answer.body or b"{}")


async def operation(
    request: Request, viewer: Viewer, name: str, res_type: str | None, body: Any, res_id: str | None = None, *, method: str = "POST"
) -> dict[str, Any]:
    answer = await call(request, viewer, "operation", res_type, res_id, body=body, operation=name, method=method)
    return jsonio.loads(answer.body or b"{}")


def resources(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    """The resources of a searchset Bundle's match entries."""
    return [
        e["resource"]
        for e in bundle.get("entry", [])
        if isinstance(e.get("resource"), dict) and e.get("search", {}).get("mode", "match") == "match"
    ]
