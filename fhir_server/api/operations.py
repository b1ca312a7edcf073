"""Routes of the ``$operations`` at system, type and instance level, dispatched by the registry."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from fhir_server.api import http
from fhir_server.api.convertors import register_fhir_convertors
from fhir_server.api.routes import answer, interaction

router = APIRouter(prefix="/fhir")
register_fhir_convertors()
_DOC: dict[str, Any] = {"description": "FHIR operation", "content": {"application/fhir+json": {"schema": {"type": "object"}}}}
_RESPONSES: dict[int | str, dict[str, Any]] = {200: _DOC, "4XX": _DOC}
_BODY = {"requestBody": {"required": False, "content": {"application/fhir+json": {"schema": {"type": "object"}}}}}


async def _dispatch(request: Request, res_type: str | None, res_id: str | None, name: str) -> Response:
    st = request.app.state.fhir
    i = interaction(
        request,
        "operation",
        res_type,
        res_id,
        operation=name,
        method=request.method,
        headers=dict(request.headers),
        params=[(k, v) for k, v in request.query_params.multi_items() if k not in ("_format", "_pretty")],
    )
    st.pipeline.authorize_operation(i)  # 404 / 401 / 403 / 405 before the body is looked at
    if request.method == "POST":
        raw = await http.read_body(request, st.settings.max_body_bytes)
        if raw.strip():
            i.body = http.parse_json(raw, request.headers.get("content-type"), st.settings)
    result = await answer(request, i)
    if result.body is None:
        return Response(status_code=result.status, headers=result.headers)
    return http.body_response(request, result.body, result.status, result.headers)


@http.get_and_post(router, "/${name}", responses=_RESPONSES, summary="system operation", openapi_extra=_BODY)
async def system_operation(request: Request, name: str) -> Response:
    return await _dispatch(request, None, None, name)


@http.get_and_post(router, "/{res_type:fhir_type}/${name}", responses=_RESPONSES, summary="type operation", openapi_extra=_BODY)
async def type_operation(request: Request, res_type: str, name: str) -> Response:
    return await _dispatch(request, res_type, None, name)


@http.get_and_post(
    router,
    "/{res_type:fhir_type}/{res_id:fhir_id}/${name}",
    responses=_RESPONSES,
    summary="instance operation",
    openapi_extra=_BODY,
)
async def instance_operation(request: Request, res_type: str, res_id: str, name: str) -> Response:
    return await _dispatch(request, res_type, res_id, name)
