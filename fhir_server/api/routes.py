"""The FHIR REST routes: parse the request, call a service, write the response."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.engine import Connection

from fhir_server import jsonio
from fhir_server.api import binary, http
from fhir_server.api.access import principal
from fhir_server.api.convertors import register_fhir_convertors
from fhir_server.errors import FhirError, operation_outcome
from fhir_server.search.compartment import Compartment
from fhir_server.service.conditional import create_condition
from fhir_server.service.patch import JSON_PATCH, MERGE_PATCH, patch_format
from fhir_server.service.pipeline import WRITES, Answer, AuditContext, Interaction
from fhir_server.service.results import MINIMAL, OPERATION_OUTCOME, REPRESENTATION, Stored, not_modified, write_outcome
from fhir_server.timeutil import parse_http_date
from fhir_server.urlcodec import parse_qsl

_FHIR_CONTENT = {"application/fhir+json": {"schema": {"type": "object"}}, "application/fhir+xml": {"schema": {"type": "string"}}}
_RESOURCE_BODY = {"requestBody": {"required": True, "content": _FHIR_CONTENT}}


def _responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    out: dict[int | str, dict[str, Any]] = {c: {"description": "FHIR resource", "content": _FHIR_CONTENT} for c in codes}
    out["4XX"] = {"description": "OperationOutcome", "content": _FHIR_CONTENT}
    return out


T = TypeVar("T")
router = APIRouter(prefix="/fhir")
register_fhir_convertors()


def _state(request: Request) -> Any:
    return request.app.state.fhir


def _handling(request: Request) -> str:
    """Prefer: handling (search.html#errors): ``strict``, ``lenient``, or "" when not asked for."""
    return http.prefer(request).get("handling", "").lower()


def interaction(request: Request, kind: str, res_type: str | None = None, res_id: str | None = None, **fields: Any) -> Interaction:
    """The request as an interaction of the pipeline (the caller's principal, the base URL,
    Prefer: handling; writes also carry what their in-transaction AuditEvent needs)."""
    st = _state(request)
    audit = audit_context(request.scope) if kind in WRITES or kind == "transaction" or kind == "operation" else None
    handling = _handling(request)
    return Interaction(
        kind,
        http.base_url(request, st.settings.base_url),
        principal(request),
        res_type,
        res_id,
        strict=handling == "strict",
        lenient=handling == "lenient",
        audit=audit,
        **fields,
    )


def audit_context(scope: Any) -> AuditContext:
    """The raw request values an AuditEvent written with the write needs (as the guard queues them)."""
    user_agent = request_id = None
    for name, value in scope["headers"]:
        if name == b"user-agent":
            user_agent = value
        elif name == b"x-request-id":
            request_id = value
    client = scope.get("client")
    return AuditContext(
        scope["method"], scope["path"], scope.get("query_string", b""), user_agent, request_id, client[0] if client else None
    )


async def answer(request: Request, i: Interaction) -> Answer:
    """Hand ``i`` to the pipeline; once its AuditEvent was committed with the write, the guard
    does not queue a second one. A change whose answer no format the client accepts can carry is
    406 before it runs (it was made, then answered 406: a client retrying made it twice)."""
    if _changes_with_an_answer(request, i):
        http.output_format(request)
    result = await _state(request).pipeline.handle(i)
    if i.audited:
        request.scope.setdefault("state", {})["audited"] = True
    return result


def _changes_with_an_answer(request: Request, i: Interaction) -> bool:
    """Whether ``i`` may change something and is answered with a body in the negotiated format."""
    if i.kind in ("create", "update", "patch"):
        wanted = http.prefer(request).get("return", REPRESENTATION)
        if wanted == MINIMAL:
            return False
        # a Binary's representation asked for in a native type is answered in it (_write_response)
        return not (wanted != OPERATION_OUTCOME and i.res_type == "Binary" and binary.native_wanted(request))
    if i.kind == "delete":
        return http.prefer(request).get("return") == OPERATION_OUTCOME
    return i.kind == "transaction" or (i.kind == "operation" and i.method == "POST")


async def write(request: Request, i: Interaction, work: Callable[[Connection], T], *, status: Callable[[T], int] | None = None) -> T:
    """Run ``work`` through the pipeline's write path on behalf of ``i`` (for HTTP endpoints that
    are not FHIR interactions, such as the Bulk Data job records)."""
    run = _state(request).pipeline.writer(i)
    result = await (run(work) if status is None else run(work, status=status))
    if i.audited:
        request.scope.setdefault("state", {})["audited"] = True
    return result


@router.get("/{res_type:fhir_type}/{res_id:fhir_id}", responses=_responses(200), summary="read")
async def read(request: Request, res_type: str, res_id: str) -> Response:
    result = await answer(request, interaction(request, "read", res_type, res_id, params=_params(request)))
    assert result.body is not None
    if result.stored is None:  # AuditEvent: served from the audit table
        return http.body_response(request, result.body)
    headers = http.version_headers(result.stored)
    if _not_modified(request, result.stored):
        return Response(status_code=304, headers=headers)
    return _resource_response(request, res_type, result.body, headers)


def _resource_response(request: Request, res_type: str, body: bytes, headers: dict[str, str]) -> Response:
    """A read's or vread's resource; a Binary in its native form when the client asks for that."""
    if res_type == "Binary" and binary.native_wanted(request):
        return binary.native_response(body, 200, headers)
    return http.body_response(request, body, 200, headers)


@router.get("/metadata", responses=_responses(200), summary="CapabilityStatement")
async def metadata(request: Request) -> Response:
    state = _state(request)
    return http.body_response(request, state.metadata_bytes(http.base_url(request, state.settings.base_url), _params(request)))


def _params(request: Request) -> list[tuple[str, str]]:
    return list(request.query_params.multi_items())


@router.get("/_history", responses=_responses(200), summary="System history")
async def history_system(request: Request) -> Response:
    return await _bundle(request, interaction(request, "history-system", params=_params(request)))


async def _bundle(request: Request, i: Interaction) -> Response:
    result = await answer(request, i)
    assert result.body is not None
    return http.body_response(request, result.body, result.status, result.headers or None)


_SEARCH_FORM = {"requestBody": {"content": {"application/x-www-form-urlencoded": {"schema": {"type": "object"}}}}}


@router.get("", responses=_responses(200), summary="System search (_type)")
async def search_system(request: Request) -> Response:
    return await _bundle(request, interaction(request, "search-system", params=_params(request)))


def type_search(request: Request, res_type: str, params: list[tuple[str, str]], compartment: Compartment | None = None) -> bytes:
    """The searchset Bundle of a type-level search (shared with the fast path in ``hot_path``),
    in ``compartment`` if given (``Patient/1/Encounter``)."""
    return _state(request).pipeline.search_now(interaction(request, "search-type", res_type, params=params, compartment=compartment))


@router.get("/{res_type:fhir_type}", responses=_responses(200), summary="search-type")
async def search_type(request: Request, res_type: str) -> Response:
    return http.body_response(request, type_search(request, res_type, _params(request)))


async def _search_form(request: Request) -> list[tuple[str, str]]:
    """The parameters of a ``POST ... _search``: the query string's and the form body's."""
    st = _state(request)
    media = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if media not in ("application/x-www-form-urlencoded", ""):
        raise FhirError.of(415, "not-supported", "POST _search takes an application/x-www-form-urlencoded body")
    body = await http.read_body(request, st.settings.max_body_bytes)
    try:
        form = parse_qsl(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise FhirError.of(400, "structure", "The form body is not valid UTF-8") from None
    return _params(request) + form


@router.post("/_search", responses=_responses(200), summary="search-system (POST)", openapi_extra=_SEARCH_FORM)
async def search_system_post(request: Request) -> Response:
    """``POST [base]/_search`` (search.html, HTTP POST at the server root): ``GET [base]?...``
    with the parameters in a form body (long ``_type`` lists, values kept out of access logs)."""
    return await _bundle(request, interaction(request, "search-system", params=await _search_form(request)))


@router.post("/{res_type:fhir_type}/_search", responses=_responses(200), summary="search-type (POST)", openapi_extra=_SEARCH_FORM)
async def search_type_post(request: Request, res_type: str) -> Response:
    _state(request).pipeline.authorize(interaction(request, "search-type", res_type))  # 401/403 before the body is looked at
    return http.body_response(request, type_search(request, res_type, await _search_form(request)))


_IN_COMPARTMENT = "/{compartment:fhir_type}/{focal_id:fhir_id}"


@router.get(_IN_COMPARTMENT + "/{res_type:fhir_type}", responses=_responses(200), summary="search-type in a compartment")
async def search_compartment_type(request: Request, compartment: str, focal_id: str, res_type: str) -> Response:
    """``GET [base]/Patient/1/Encounter?...``: the Encounters in Patient 1's compartment (search/compartment.py)."""
    return http.body_response(request, type_search(request, res_type, _params(request), Compartment(compartment, focal_id)))


@router.post(_IN_COMPARTMENT + "/{res_type:fhir_type}/_search", responses=_responses(200), summary="search-type in a compartment (POST)")
async def search_compartment_type_post(request: Request, compartment: str, focal_id: str, res_type: str) -> Response:
    _state(request).pipeline.authorize(interaction(request, "search-type", res_type))  # 401/403 before the body is looked at
    in_compartment = Compartment(compartment, focal_id)
    return http.body_response(request, type_search(request, res_type, await _search_form(request), in_compartment))


@router.get(_IN_COMPARTMENT + "/*", responses=_responses(200), summary="search in a compartment (every type, or _type)")
async def search_compartment(request: Request, compartment: str, focal_id: str) -> Response:
    """``GET [base]/Patient/1/*?...``: every resource in Patient 1's compartment, or those of ``_type``."""
    i = interaction(request, "search-system", params=_params(request), compartment=Compartment(compartment, focal_id))
    return await _bundle(request, i)


@router.post(_IN_COMPARTMENT + "/_search", responses=_responses(200), summary="search in a compartment (POST)")
async def search_compartment_post(request: Request, compartment: str, focal_id: str) -> Response:
    i = interaction(request, "search-system", params=await _search_form(request), compartment=Compartment(compartment, focal_id))
    return await _bundle(request, i)


@router.get("/{res_type:fhir_type}/_history", responses=_responses(200), summary="Type history")
async def history_type(request: Request, res_type: str) -> Response:
    return await _bundle(request, interaction(request, "history-type", res_type, params=_params(request)))


@router.get("/{res_type:fhir_type}/{res_id:fhir_id}/_history", responses=_responses(200), summary="Instance history")
async def history_instance(request: Request, res_type: str, res_id: str) -> Response:
    return await _bundle(request, interaction(request, "history-instance", res_type, res_id, params=_params(request)))


@router.get("/{res_type:fhir_type}/{res_id:fhir_id}/_history/{version:fhir_id}", responses=_responses(200), summary="vread")
async def vread(request: Request, res_type: str, res_id: str, version: str) -> Response:
    result = await answer(request, interaction(request, "vread", res_type, res_id, version=version, params=_params(request)))
    assert result.body is not None and result.stored is not None
    headers = http.version_headers(result.stored)
    # a conditional GET (RFC 9110 §13.1.2-3), as on a read: a version never changes, so a client
    # holding its ETag needs no body
    if _not_modified(request, result.stored):
        return Response(status_code=304, headers=headers)
    return _resource_response(request, res_type, result.body, headers)


def _not_modified(request: Request, stored: Stored) -> bool:
    since = request.headers.get("if-modified-since")
    since_us = parse_http_date(since) if since is not None else None  # an invalid date is ignored (RFC 9110)
    # an HTTP date covers its whole second
    return not_modified(stored, request.headers.get("if-none-match"), since_us + 999_999 if since_us is not None else None)


async def _write(
    request: Request, kind: str, res_type: str, res_id: str | None = None, *, body: bool = True, conditional: bool = False
) -> Response:
    """A write: authorized before its body is read, then handed to the pipeline."""
    st = _state(request)
    condition = _create_condition(request) if kind == "create" else (_condition(request) if conditional else None)
    i = interaction(request, kind, res_type, res_id, condition=condition or None, if_match=request.headers.get("if-match"))
    st.pipeline.authorize(i)  # 404 / 405 / 401 / 403 before the body is looked at
    if kind == "patch":
        i.patch_type, i.body = await _patch_request(request)
    elif body and res_type == "Binary" and binary.is_native_body(request):
        i.body = await binary.read_native(request, st.settings, res_id)
    elif body:
        i.body = await http.read_resource(request, st.settings)
    result = await answer(request, i)
    if kind == "delete":
        headers = {"ETag": result.stored.etag} if result.stored is not None else {}
        if http.prefer(request).get("return") == OPERATION_OUTCOME:
            # http.html#delete: 200 when the response has a payload; what was deleted, if anything
            issues = write_outcome(result.stored, 204, result.issues, deleted=True)
            return http.body_response(request, jsonio.dumps(operation_outcome(issues)), 200, headers)
        return Response(status_code=204, headers=headers)
    return _write_response(request, result)


@router.post("/{res_type:fhir_type}", responses=_responses(201), summary="create", openapi_extra=_RESOURCE_BODY)
async def create(request: Request, res_type: str) -> Response:
    return await _write(request, "create", res_type)


@router.put("/{res_type:fhir_type}/{res_id:fhir_id}", responses=_responses(200, 201), summary="update", openapi_extra=_RESOURCE_BODY)
async def update(request: Request, res_type: str, res_id: str) -> Response:
    return await _write(request, "update", res_type, res_id)


@router.put("/{res_type:fhir_type}", responses=_responses(200, 201), summary="conditional update", openapi_extra=_RESOURCE_BODY)
async def conditional_update(request: Request, res_type: str) -> Response:
    return await _write(request, "update", res_type, conditional=True)


@router.delete("/{res_type:fhir_type}", responses=_responses(200, 204), summary="conditional delete")
async def conditional_delete(request: Request, res_type: str) -> Response:
    return await _write(request, "delete", res_type, body=False, conditional=True)


_PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, "application/fhir+json", "application/json", "application/fhir+xml", "application/xml")
_PATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            JSON_PATCH: {"schema": {"type": "array"}},
            MERGE_PATCH: {"schema": {"type": "object"}},
            "application/fhir+json": {"schema": {"type": "object"}},
        },
    }
}


async def _patch_request(request: Request) -> tuple[str, Any]:
    """(patch format, parsed body) of a PATCH request (``service.patch.patch_format``)."""
    st = _state(request)
    media = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if media not in _PATCH_TYPES:
        raise FhirError.of(
            415,
            "not-supported",
            "PATCH takes application/json-patch+json (JSON Patch), application/merge-patch+json (JSON Merge Patch) "
            "or a FHIR Parameters resource (FHIRPath Patch)",
        )
    if media in (JSON_PATCH, MERGE_PATCH):  # read as JSON, with the parameters sent (charset)
        parameters = (request.headers.get("content-type") or "").partition(";")[2]
        body = await http.read_json(request, st.settings, "application/json" + (";" + parameters if parameters else ""))
    else:
        body = await http.read_json(request, st.settings)
    return patch_format(media, body), body


@router.patch("/{res_type:fhir_type}/{res_id:fhir_id}", responses=_responses(200), summary="patch", openapi_extra=_PATCH_BODY)
async def patch(request: Request, res_type: str, res_id: str) -> Response:
    return await _write(request, "patch", res_type, res_id)


@router.patch("/{res_type:fhir_type}", responses=_responses(200), summary="conditional patch", openapi_extra=_PATCH_BODY)
async def conditional_patch(request: Request, res_type: str) -> Response:
    return await _write(request, "patch", res_type, conditional=True)


def _create_condition(request: Request) -> str | None:
    return create_condition(request.headers.get("if-none-exist"), request.url.query)


def _condition(request: Request) -> str:
    query = request.url.query
    if not query:
        raise FhirError.of(400, "invalid", "This interaction needs an id in the URL or search parameters as a condition")
    return query


@router.post("", responses=_responses(200), summary="transaction / batch", openapi_extra=_RESOURCE_BODY)
async def transaction(request: Request) -> Response:
    st = _state(request)
    bundle = await http.read_resource(request, st.settings)
    # applied to each write entry (transaction.entry_response); an unknown value is the default
    returns = http.prefer(request).get("return", REPRESENTATION)
    if returns not in (MINIMAL, OPERATION_OUTCOME):
        returns = REPRESENTATION
    return await _bundle(request, interaction(request, "transaction", body=bundle, returns=returns))


@router.delete("/{res_type:fhir_type}/{res_id:fhir_id}", responses=_responses(200, 204), summary="delete")
async def delete(request: Request, res_type: str, res_id: str) -> Response:
    return await _write(request, "delete", res_type, res_id, body=False)


def _write_response(request: Request, result: Answer) -> Response:
    """Status, ETag, Last-Modified, Location and the body the Prefer header asks for."""
    st = _state(request)
    base = http.base_url(request, st.settings.base_url)
    assert result.stored is not None
    headers = http.version_headers(result.stored, base)
    wanted = http.prefer(request).get("return", REPRESENTATION)
    if wanted == MINIMAL:
        return Response(status_code=result.status, headers=headers)
    if wanted == OPERATION_OUTCOME:
        issues = write_outcome(result.stored, result.status, result.issues)
        return http.body_response(request, jsonio.dumps(operation_outcome(issues)), result.status, headers)
    assert result.stored.body is not None
    if result.stored.res_type == "Binary" and binary.native_wanted(request):  # the representation, in its own type
        return binary.native_response(result.stored.body, result.status, headers)
    return http.body_response(request, result.stored.body, result.status, headers)
