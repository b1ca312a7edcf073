"""The FHIR REST routes: parse the request, call a service, write the response."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from fhir_server import jsonio
from fhir_server.api import http
from fhir_server.api.access import principal
from fhir_server.api.convertors import register_fhir_convertors
from fhir_server.errors import FhirError, Issue, operation_outcome
from fhir_server.registry import interactions_for, is_resource_type
from fhir_server.service.results import WriteResult
from fhir_server.timeutil import parse_http_date
from fhir_server.urlcodec import parse_qsl

_FHIR_CONTENT = {"application/fhir+json": {"schema": {"type": "object"}}, "application/fhir+xml": {"schema": {"type": "string"}}}
_RESOURCE_BODY = {"requestBody": {"required": True, "content": _FHIR_CONTENT}}


def _responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    out: dict[int | str, dict[str, Any]] = {c: {"description": "FHIR resource", "content": _FHIR_CONTENT} for c in codes}
    out["4XX"] = {"description": "OperationOutcome", "content": _FHIR_CONTENT}
    return out


router = APIRouter(prefix="/fhir")
register_fhir_convertors()


def _state(request: Request) -> Any:
    return request.app.state.fhir


def _check_type(res_type: str) -> None:
    if not is_resource_type(res_type):
        raise FhirError.of(404, "not-supported", f"'{res_type}' is not an R4 resource type this server knows")


def _begin(request: Request, res_type: str, interaction: str, *, conditional: bool = False) -> None:
    """A known type, an interaction it supports (405), a caller allowed to do it (401/403)."""
    _check_type(res_type)
    if interaction not in interactions_for(res_type):
        raise FhirError(405, [Issue("error", "not-supported", f"{interaction} is not supported on {res_type}")], {"Allow": "GET"})
    principal(request).require(res_type, interaction, conditional=conditional)


@router.get("/{res_type:fhir_type}/{res_id:fhir_id}", responses=_responses(200), summary="read")
async def read(request: Request, res_type: str, res_id: str) -> Response:
    _begin(request, res_type, "read")
    st = _state(request)
    if res_type == "AuditEvent":
        return http.body_response(request, st.audit_trail.read(res_id))
    stored = st.resources.read(res_type, res_id)
    assert stored.body is not None
    headers = http.version_headers(stored)
    if _not_modified(request, stored.etag, stored.updated_us):
        return Response(status_code=304, headers=headers)
    return http.body_response(request, stored.body, 200, headers)


@router.get("/metadata", responses=_responses(200), summary="CapabilityStatement")
async def metadata(request: Request) -> Response:
    return http.body_response(request, _state(request).capability_bytes(http.base_url(request, _state(request).settings.base_url)))


@router.get("/_history", responses=_responses(200), summary="System history")
async def history_system(request: Request) -> Response:
    principal(request).require(None, "history-system")
    st = _state(request)
    base = http.base_url(request, st.settings.base_url)
    return http.body_response(request, st.history.history(base, None, None, list(request.query_params.multi_items())))


def _strict(request: Request) -> bool:
    return http.prefer(request).get("handling", "lenient").lower() == "strict"


_SEARCH_FORM = {"requestBody": {"content": {"application/x-www-form-urlencoded": {"schema": {"type": "object"}}}}}


@router.get("", responses=_responses(200), summary="System search (_type)")
async def search_system(request: Request) -> Response:
    st = _state(request)
    base = http.base_url(request, st.settings.base_url)
    params = list(request.query_params.multi_items())
    types = [t.strip() for k, v in params if k == "_type" for t in v.split(",") if t.strip()]
    who = principal(request)
    for res_type in types or [None]:
        who.require(res_type, "search-type" if res_type else "search-system")
    return http.body_response(request, st.search.search(base, None, params, strict=_strict(request), readable=who.readable))


def type_search(request: Request, res_type: str, params: list[tuple[str, str]]) -> bytes:
    """The searchset Bundle of a type-level search (shared with the fast path in ``fast_read``)."""
    _begin(request, res_type, "search-type")
    st = _state(request)
    base = http.base_url(request, st.settings.base_url)
    if res_type == "AuditEvent":
        return st.audit_trail.search(base, params)
    return st.search.search(base, res_type, params, strict=_strict(request), readable=principal(request).readable)


@router.get("/{res_type:fhir_type}", responses=_responses(200), summary="search-type")
async def search_type(request: Request, res_type: str) -> Response:
    return http.body_response(request, type_search(request, res_type, list(request.query_params.multi_items())))


@router.post("/{res_type:fhir_type}/_search", responses=_responses(200), summary="search-type (POST)", openapi_extra=_SEARCH_FORM)
async def search_type_post(request: Request, res_type: str) -> Response:
    _begin(request, res_type, "search-type")  # 401/403 before the body is looked at
    st = _state(request)
    media = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if media not in ("application/x-www-form-urlencoded", ""):
        raise FhirError.of(415, "not-supported", "POST _search takes an application/x-www-form-urlencoded body")
    body = await http.read_body(request, st.settings.max_body_bytes)
    try:
        form = parse_qsl(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise FhirError.of(400, "structure", "The form body is not valid UTF-8") from None
    return http.body_response(request, type_search(request, res_type, list(request.query_params.multi_items()) + form))


@router.get("/{res_type:fhir_type}/_history", responses=_responses(200), summary="Type history")
async def history_type(request: Request, res_type: str) -> Response:
    _begin(request, res_type, "history-type")
    st = _state(request)
    base = http.base_url(request, st.settings.base_url)
    return http.body_response(request, st.history.history(base, res_type, None, list(request.query_params.multi_items())))


@router.get("/{res_type:fhir_type}/{res_id:fhir_id}/_history", responses=_responses(200), summary="Instance history")
async def history_instance(request: Request, res_type: str, res_id: str) -> Response:
    _begin(request, res_type, "history-instance")
    st = _state(request)
    base = http.base_url(request, st.settings.base_url)
    return http.body_response(request, st.history.history(base, res_type, res_id, list(request.query_params.multi_items())))


@router.get("/{res_type:fhir_type}/{res_id:fhir_id}/_history/{version:fhir_id}", responses=_responses(200), summary="vread")
async def vread(request: Request, res_type: str, res_id: str, version: str) -> Response:
    _begin(request, res_type, "vread")
    st = _state(request)
    stored = st.resources.vread(res_type, res_id, version)
    assert stored.body is not None
    return http.body_response(request, stored.body, 200, http.version_headers(stored))


def _not_modified(request: Request, etag: str, updated_us: int) -> bool:
    none_match = request.headers.get("if-none-match")
    if none_match is not None:
        tags = {t.strip() for t in none_match.split(",")}
        return "*" in tags or etag in tags or etag[2:] in tags
    since = request.headers.get("if-modified-since")
    if since is not None:
        since_us = parse_http_date(since)
        return since_us is not None and updated_us // 1_000_000 * 1_000_000 <= since_us
    return False


@router.post("/{res_type:fhir_type}", responses=_responses(201), summary="create", openapi_extra=_RESOURCE_BODY)
async def create(request: Request, res_type: str) -> Response:
    _begin(request, res_type, "create", conditional=bool(request.headers.get("if-none-exist")))
    st = _state(request)
    resource = await http.read_resource(request, st.settings)
    condition = request.headers.get("if-none-exist")
    if condition:
        result = st.conditional.create(res_type, resource, condition, http.base_url(request, st.settings.base_url))
    else:
        result = await st.resources.create_grouped(res_type, resource)
    return _write_response(request, result)


@router.put("/{res_type:fhir_type}/{res_id:fhir_id}", responses=_responses(200, 201), summary="update", openapi_extra=_RESOURCE_BODY)
async def update(request: Request, res_type: str, res_id: str) -> Response:
    _begin(request, res_type, "update")
    st = _state(request)
    resource = await http.read_resource(request, st.settings)
    result = st.resources.update(res_type, res_id, resource, request.headers.get("if-match"))
    return _write_response(request, result)


@router.put("/{res_type:fhir_type}", responses=_responses(200, 201), summary="conditional update", openapi_extra=_RESOURCE_BODY)
async def conditional_update(request: Request, res_type: str) -> Response:
    _begin(request, res_type, "update", conditional=True)
    st = _state(request)
    condition = _condition(request)
    resource = await http.read_resource(request, st.settings)
    base = http.base_url(request, st.settings.base_url)
    result = st.conditional.update(res_type, resource, condition, base, request.headers.get("if-match"))
    return _write_response(request, result)


@router.delete("/{res_type:fhir_type}", responses=_responses(200, 204), summary="conditional delete")
async def conditional_delete(request: Request, res_type: str) -> Response:
    _begin(request, res_type, "delete", conditional=True)
    st = _state(request)
    results = st.conditional.delete(res_type, _condition(request), http.base_url(request, st.settings.base_url))
    headers = {"ETag": results[0].stored.etag} if len(results) == 1 else {}
    return Response(status_code=204, headers=headers)


_PATCH_TYPES = ("application/json-patch+json", "application/fhir+json", "application/json", "application/fhir+xml", "application/xml")
_PATCH_BODY = {"requestBody": {"required": True, "content": {
    "application/json-patch+json": {"schema": {"type": "array"}}, "application/fhir+json": {"schema": {"type": "object"}}}}}


async def _patch_request(request: Request) -> tuple[str, Any]:
    st = _state(request)
    media = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if media not in _PATCH_TYPES:
        raise FhirError.of(415, "not-supported", "PATCH takes application/json-patch+json (JSON Patch) or a FHIR Parameters resource (FHIRPath Patch)")
    if media == "application/json-patch+json":
        return media, await http.read_json(request, st.settings, "application/json")
    return "application/fhir+json", await http.read_json(request, st.settings)


@router.patch("/{res_type:fhir_type}/{res_id:fhir_id}", responses=_responses(200), summary="patch", openapi_extra=_PATCH_BODY)
async def patch(request: Request, res_type: str, res_id: str) -> Response:
    _begin(request, res_type, "patch")
    st = _state(request)
    media, body = await _patch_request(request)
    result = st.resources.patch(res_type, res_id, media, body, request.headers.get("if-match"))
    return _write_response(request, result)


@router.patch("/{res_type:fhir_type}", responses=_responses(200), summary="conditional patch", openapi_extra=_PATCH_BODY)
async def conditional_patch(request: Request, res_type: str) -> Response:
    _begin(request, res_type, "patch", conditional=True)
    st = _state(request)
    media, body = await _patch_request(request)
    base = http.base_url(request, st.settings.base_url)
    result = st.conditional.patch(res_type, _condition(request), base, media, body, request.headers.get("if-match"))
    return _write_response(request, result)


def _condition(request: Request) -> str:
    query = request.url.query
    if not query:
        raise FhirError.of(400, "invalid", "This interaction needs an id in the URL or search parameters as a condition")
    return query


@router.post("", responses=_responses(200), summary="transaction / batch", openapi_extra=_RESOURCE_BODY)
async def transaction(request: Request) -> Response:
    st = _state(request)
    bundle = await http.read_resource(request, st.settings)
    representation = http.prefer(request).get("return", "representation") != "minimal"
    body = await st.bundles.process_grouped(
        http.base_url(request, st.settings.base_url), bundle, representation=representation, authorize=principal(request).require
    )
    return http.body_response(request, body)


@router.delete("/{res_type:fhir_type}/{res_id:fhir_id}", responses=_responses(200, 204), summary="delete")
async def delete(request: Request, res_type: str, res_id: str) -> Response:
    _begin(request, res_type, "delete")
    st = _state(request)
    result = st.resources.delete(res_type, res_id, request.headers.get("if-match"))
    headers = {"ETag": result.stored.etag} if result.stored.version else {}
    return Response(status_code=204, headers=headers)


def _write_response(request: Request, result: WriteResult) -> Response:
    """Status, ETag, Last-Modified, Location and the body the Prefer header asks for."""
    st = _state(request)
    base = http.base_url(request, st.settings.base_url)
    headers = http.version_headers(result.stored, base)
    wanted = http.prefer(request).get("return", "representation")
    if wanted == "minimal":
        return Response(status_code=result.status, headers=headers)
    if wanted.lower() == "operationoutcome":
        issues = result.issues or [
            Issue("information", "informational", f"{result.stored.location} stored ({result.status})")
        ]
        return http.body_response(request, jsonio.dumps(operation_outcome(issues)), result.status, headers)
    assert result.stored.body is not None
    return http.body_response(request, result.stored.body, result.status, headers)
