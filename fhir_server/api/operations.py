"""Routes of the ``$operations`` at system, type and instance level, dispatched by the registry."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from fhir_server.api import http
from fhir_server.api.access import principal
from fhir_server.api.convertors import register_fhir_convertors
from fhir_server.errors import FhirError
from fhir_server.operations.registry import OperationCall, find
from fhir_server.registry import is_resource_type

router = APIRouter(prefix="/fhir")
register_fhir_convertors()
_DOC = {"description": "FHIR operation", "content": {"application/fhir+json": {"schema": {"type": "object"}}}}
_RESPONSES = {200: _DOC, "4XX": _DOC}
_BODY = {"requestBody": {"required": False, "content": {"application/fhir+json": {"schema": {"type": "object"}}}}}


async def _dispatch(request: Request, res_type: str | None, res_id: str | None, name: str) -> Response:
    if res_type is not None and not is_resource_type(res_type):
        raise FhirError.of(404, "not-supported", f"'{res_type}' is not an R4 resource type this server knows")
    operation = find(name, res_type, instance=res_id is not None)
    who = principal(request)
    who.require_operation(res_type, name, affects_state=operation.affects_state)
    if request.method == "GET" and operation.affects_state:
        raise FhirError(405, FhirError.of(405, "not-supported", f"${name} changes data: use POST").issues, {"Allow": "POST"})
    st = request.app.state.fhir
    body = None
    if request.method == "POST":
        raw = await http.read_body(request, st.settings.max_body_bytes)
        if raw.strip():
            body = http.parse_json(raw, request.headers.get("content-type"), st.settings)
    call = OperationCall(
        base=http.base_url(request, st.settings.base_url),
        method=request.method,
        res_type=res_type,
        res_id=res_id,
        query=[(k, v) for k, v in request.query_params.multi_items() if k not in ("_format", "_pretty")],
        body=body,
        headers=dict(request.headers),
        readable=who.readable,
    )
    result = operation.handler(st, call)
    if result.body is None:
        return Response(status_code=result.status, headers=result.headers)
    return http.body_response(request, result.body, result.status, result.headers)


@router.api_route("/${name}", methods=["GET", "POST"], responses=_RESPONSES, summary="system operation", openapi_extra=_BODY)
async def system_operation(request: Request, name: str) -> Response:
    return await _dispatch(request, None, None, name)


@router.api_route("/{res_type:fhir_type}/${name}", methods=["GET", "POST"], responses=_RESPONSES, summary="type operation", openapi_extra=_BODY)
async def type_operation(request: Request, res_type: str, name: str) -> Response:
    return await _dispatch(request, res_type, None, name)


@router.api_route("/{res_type:fhir_type}/{res_id:fhir_id}/${name}", methods=["GET", "POST"], responses=_RESPONSES, summary="instance operation", openapi_extra=_BODY)
async def instance_operation(request: Request, res_type: str, res_id: str, name: str) -> Response:
    return await _dispatch(request, res_type, res_id, name)
