"""HTTP side of Bulk Data ``$export`` (FHIR Bulk Data Access 2.0, the async request pattern).

* kick-off: ``GET|POST /fhir/$export``, ``/fhir/Patient/$export``, ``/fhir/Group/{id}/$export``
  with ``Prefer: respond-async`` -> 202 + ``Content-Location: {base}/$export-status/{job}``;
* status: ``GET /fhir/$export-status/{job}`` -> 202 + ``X-Progress`` while queued or running,
  200 + the JSON manifest when complete, 500 + OperationOutcome when the export failed,
  404 when unknown or cancelled;
* cancel: ``DELETE /fhir/$export-status/{job}`` -> 202 (the job stops, its files are removed);
* files: ``GET /fhir/$export-file/{job}/{Type}.ndjson`` -> ``application/fhir+ndjson``;
  ``GET /fhir/$export-file/{job}/error/OperationOutcome.ndjson``: the manifest's error file.

Parameters (read by ``kickoff``): ``_outputFormat``, ``_since`` (not in the future), ``_type``,
``includeAssociatedData`` (Latest/RelevantProvenanceResources), ``_typeFilter`` (search queries
per type), ``_elements`` (top-level elements kept, resources tagged SUBSETTED) and, in a POST's
Parameters body at Patient and Group level, ``patient`` (those patients only; unknown ones, or
non-members of the Group, are 400). Other parameters (``_until``, ...) and values are refused
with 400, or with ``Prefer: handling=lenient`` ignored and reported as OperationOutcomes in the
manifest's ``error`` file.

With ``FHIR_AUTH=token`` the scopes of each request's token decide: a kick-off exports only
types the token may export (read and search; ``_type`` naming another is 403; without ``_type``
a system-level export needs a wildcard, and a Patient / Group level one leaves the others out),
the manifest lists only the files the polling token may read, and a file download needs read
on the file's type (403 otherwise), whichever token of the job's client asks.

Declare this router before the generic ``$operation`` routes: ``$export``,
``$export-status`` and ``$export-file`` are served here.
"""

from __future__ import annotations

import re

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response
from starlette.types import Receive, Scope, Send

from fhir_server import jsonio
from fhir_server.api import http, request_forms
from fhir_server.api.access import principal
from fhir_server.api.convertors import register_fhir_convertors
from fhir_server.api.routes import interaction, write
from fhir_server.bulk import jobs, kickoff
from fhir_server.bulk.exporter import error_file_path, existing_patients, file_path, group_patient_ids, patient_types, remove_files
from fhir_server.bulk.worker import export_dir, poll_interval
from fhir_server.errors import FhirError, Issue
from fhir_server.resource_types import is_resource_type
from fhir_server.search.parameters import resource_types
from fhir_server.search.parse import parse_query
from fhir_server.search.scope_filter import restrict_criteria
from fhir_server.storage.db import Database
from fhir_server.timeutil import now_us, to_instant
from fhir_server.urlcodec import parse_qsl

router = APIRouter(prefix="/fhir")
register_fhir_convertors()

NDJSON = kickoff.NDJSON
_FILE = re.compile(r"^([A-Z][A-Za-z]{1,63})\.ndjson$")
_JOB_ID = re.compile(r"^[0-9a-f-]{36}$")
_DOC = {"description": "Bulk Data", "content": {"application/fhir+json": {"schema": {"type": "object"}}}}


def _check_patients(db: Database, patient_ids: list[str], group_id: str | None) -> None:
    """400 naming every ``patient`` that is not on the server (or deleted), or not an active member
    of the Group: the IG asks for an error response with an OperationOutcome, not a silent subset."""
    missing = set(patient_ids) - existing_patients(db, patient_ids)
    members = set(group_patient_ids(db, group_id)) if group_id is not None else None
    issues = []
    for pid in patient_ids:
        if pid in missing:
            issues.append(Issue("error", "not-found", f"patient: Patient/{pid} is not known (or was deleted)"))
        elif members is not None and pid not in members:
            issues.append(Issue("error", "not-found", f"patient: Patient/{pid} is not an active member of Group/{group_id}"))
    if issues:
        raise FhirError(400, issues)


def _request_url(request: Request, base: str) -> str:
    path = request.url.path
    at = path.find("/fhir/")
    rest = path[at + len("/fhir") :] if at >= 0 else path
    query = request.url.query
    return f"{base}{rest}" + (f"?{query}" if query else "")


async def _kickoff(request: Request, level: str, group_id: str | None) -> Response:
    st = request.app.state.fhir
    who = principal(request)
    res_type = {"system": None, "patient": "Patient", "group": "Group"}[level]
    if res_type is not None:  # 401/403 before the body is looked at
        who.require_operation(res_type, "export", affects_state=False)
    prefer = http.prefer(request)
    if "respond-async" not in prefer:
        raise FhirError.of(400, "invalid", "$export runs asynchronously: send the header 'Prefer: respond-async'")
    lenient = prefer.get("handling", "").lower() == "lenient"
    body = None
    if request.method == "POST":
        raw = await http.read_body(request, st.settings.max_body_bytes)
        if raw.strip():
            body = http.parse_json(raw, request.headers.get("content-type"), st.settings)
    base = http.base_url(request, st.settings.base_url)
    params = kickoff.read(kickoff.parameters(request.query_params.multi_items(), body), level, base, now_us(), lenient)

    candidates = resource_types() if level == "system" else patient_types()
    types = st.pipeline.authorize_export(who, res_type, params.types, candidates)
    if params.associated_data:
        # associated Provenance leaves the server with the export: the token must be allowed to export it
        st.pipeline.authorize_export(who, None, ["Provenance"], [])
    if level == "group":
        st.resources.read("Group", group_id or "")  # 400 bad id, 404 unknown, 410 deleted
    if params.patient_ids is not None:
        # whether a patient exists (or is in the Group) is what a search on Patient tells
        st.pipeline.authorize_export(who, None, ["Patient"], [])
        _check_patients(st.db, params.patient_ids, group_id if level == "group" else None)
    if params.type_filters and who.restricted:
        # a _typeFilter's chains and _has select by other types, as a search's do: only by types
        # the token may search (403 otherwise, search/scope_filter.py)
        for filtered_type, queries in params.type_filters.items():
            for query in queries:
                restrict_criteria(parse_query(filtered_type, parse_qsl(query), strict=True).criteria, who.searchable)
    if request_forms.is_head(request.scope):
        # HEAD is safe: every check above answered as for the GET, but no job is started
        text = "HEAD cannot start an export (it starts a job): send GET or POST"
        raise FhirError(405, FhirError.of(405, "not-supported", text).issues, {"Allow": "GET, POST"})
    request_url = _request_url(request, base)
    job_id = await write(
        request,
        interaction(request, "operation", res_type, group_id, operation="export"),
        lambda conn: jobs.create_job_in(
            conn,
            level=level,
            group_id=group_id,
            types=types,
            since_us=params.since_us,
            output_format=params.output_format,
            request_url=request_url,
            client_id=who.client_id,
            patient_ids=params.patient_ids,
            associated_data=params.associated_data,
            kickoff_issues=tuple(i.to_fhir() for i in params.ignored),
            type_filters=params.type_filters,
            elements=params.elements,
        ),
        status=lambda _: 202,
    )
    headers = {"Content-Location": f"{base}/$export-status/{job_id}"}
    info = [Issue("information", "informational", f"Export job {job_id} accepted; poll the Content-Location")]
    return http.outcome_response(request, info, 202, headers)


@http.get_and_post(router, "/$export", status_code=202, responses={202: _DOC, "4XX": _DOC}, summary="Bulk Data export: system level")
async def export_system(request: Request) -> Response:
    return await _kickoff(request, "system", None)


@http.get_and_post(
    router,
    "/Patient/$export",
    status_code=202,
    responses={202: _DOC, "4XX": _DOC},
    summary="Bulk Data export: all Patients",
)
async def export_patients(request: Request) -> Response:
    return await _kickoff(request, "patient", None)


@http.get_and_post(
    router,
    "/Group/{group_id:fhir_id}/$export",
    status_code=202,
    responses={202: _DOC, "4XX": _DOC},
    summary="Bulk Data export: the Patients of a Group",
)
async def export_group(request: Request, group_id: str) -> Response:
    return await _kickoff(request, "group", group_id)


def _own_job(request: Request, job_id: str) -> jobs.Job:
    """The caller's job, or 404 (unknown, cancelled, or another client's)."""
    st = request.app.state.fhir
    who = principal(request)
    job = jobs.get_job(st.db, job_id) if _JOB_ID.match(job_id) else None
    if job is None or job.status == "cancelled" or job.client_id != who.client_id:
        raise FhirError.of(404, "not-found", f"No export job {job_id}")
    return job


@router.get(
    "/$export-status/{job_id}", responses={200: _DOC, 202: _DOC, "4XX": _DOC, "5XX": _DOC}, summary="Bulk Data export status / manifest"
)
async def export_status(request: Request, job_id: str) -> Response:
    st = request.app.state.fhir
    job = _own_job(request, job_id)
    if job.status in ("queued", "running"):
        retry = max(1, int(poll_interval(st.settings)))
        return Response(status_code=202, headers={"X-Progress": job.progress or job.status, "Retry-After": str(retry)})
    if job.status == "error":
        issues = [Issue("error", "exception", f"The export failed: {job.error or 'unknown error'}")]
        return http.outcome_response(request, issues, 500)
    base = http.base_url(request, st.settings.base_url)
    stored = job.manifest or {}
    who = principal(request)
    manifest = {
        "transactionTime": to_instant(job.transaction_time_us or job.updated_us),
        "request": job.request_url,
        "requiresAccessToken": st.settings.auth == "token",
        "output": [
            {"type": o["type"], "url": f"{base}/$export-file/{job.id}/{o['type']}.ndjson", "count": o["count"]}
            for o in stored.get("output", [])
            if who.readable(o["type"])  # a token that may not read a type does not learn its file exists
        ],
        # the parameters a lenient kick-off ignored, one OperationOutcome each (a statement about the
        # request, like "request" above: listed for every token of the job's client)
        "error": [
            {"type": "OperationOutcome", "url": f"{base}/$export-file/{job.id}/error/OperationOutcome.ndjson", "count": e["count"]}
            for e in stored.get("error", [])
        ],
    }
    return Response(jsonio.dumps(manifest), 200, media_type="application/json")


@router.delete(
    "/$export-status/{job_id}",
    status_code=202,
    responses={202: _DOC, "4XX": _DOC},
    summary="Cancel a Bulk Data export (and delete its files)",
)
async def export_cancel(request: Request, job_id: str) -> Response:
    st = request.app.state.fhir
    job = _own_job(request, job_id)
    cancel = interaction(request, "operation", operation="export-status")
    if not await write(request, cancel, lambda conn: jobs.cancel_in(conn, job.id), status=lambda _: 202):
        raise FhirError.of(404, "not-found", f"No export job {job_id}")
    remove_files(export_dir(st.settings), job.id)
    info = [Issue("information", "informational", f"Export job {job_id} cancelled; its files are deleted")]
    return http.outcome_response(request, info, 202)


@router.get(
    "/$export-file/{job_id}/{file_name}", responses={200: {"description": "NDJSON"}, "4XX": _DOC}, summary="A Bulk Data export file"
)
async def export_file(request: Request, job_id: str, file_name: str) -> Response:
    st = request.app.state.fhir
    job = _own_job(request, job_id)
    m = _FILE.match(file_name)
    if m is None or not is_resource_type(m.group(1)):
        raise FhirError.of(404, "not-found", f"No file {file_name} in export {job_id}")
    res_type = m.group(1)
    # the job is the client's, but this token may have narrower scopes than the kick-off's:
    # checked before looking for the file, so a 403 says nothing about what the job holds
    st.pipeline.authorize_export_file(principal(request), res_type)
    listed = {o["type"] for o in (job.manifest or {}).get("output", [])}
    if job.status != "complete" or res_type not in listed:
        raise FhirError.of(404, "not-found", f"No file {file_name} in export {job_id}")
    path = file_path(export_dir(st.settings), job.id, res_type)
    if not path.is_file():
        raise FhirError.of(404, "not-found", f"The file {file_name} of export {job_id} is gone")
    return _ExportFile(path, media_type=NDJSON)


class _ExportFile(FileResponse):
    """An export file. Its HEAD reaches the route as a GET (``request_forms``), which would read
    the whole file for ``_headers_only`` to drop it: given the HEAD back, Starlette answers from
    the file's ``stat`` (Content-Length, Last-Modified, ETag) and never opens it."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if request_forms.is_head(scope):
            scope = {**scope, "method": "HEAD"}
        await super().__call__(scope, receive, send)


@router.get(
    "/$export-file/{job_id}/error/{file_name}",
    responses={200: {"description": "NDJSON of OperationOutcome"}, "4XX": _DOC},
    summary="The error file of a Bulk Data export (the parameters a lenient kick-off ignored)",
)
async def export_error_file(request: Request, job_id: str, file_name: str) -> Response:
    """The manifest's ``error`` file: OperationOutcomes about the kick-off request itself (which
    parameters were ignored), no resource data, so like the status response it is the job's
    client's (404 for anyone else) whatever the token's resource scopes."""
    st = request.app.state.fhir
    job = _own_job(request, job_id)
    if file_name != "OperationOutcome.ndjson" or job.status != "complete" or not (job.manifest or {}).get("error"):
        raise FhirError.of(404, "not-found", f"No error file {file_name} in export {job_id}")
    path = error_file_path(export_dir(st.settings), job.id)
    if not path.is_file():
        raise FhirError.of(404, "not-found", f"The error file of export {job_id} is gone")
    return _ExportFile(path, media_type=NDJSON)
