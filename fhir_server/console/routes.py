"""The console's pages: the landing page, the offline API docs, sign-in and the console itself.

Every page that shows or changes FHIR data goes through :mod:`.gateway` (the one pipeline, the
viewer's principal, the audit trail); refusals become HTML pages with the pipeline's status
(403 for a role that lacks the scope). Forms are POSTs with a CSRF token.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlparse

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from fhir_server import __version__, jsonio
from fhir_server.audit.events import CLIENT_SYSTEM, AuditRecord
from fhir_server.auth import users
from fhir_server.errors import FhirError, Issue
from fhir_server.mpi.features import extract
from fhir_server.mpi.scoring import score_pair
from fhir_server.resource_types import RESOURCE_TYPES, is_resource_type
from fhir_server.search.parameters import params_for
from mappings import systems as S
from mappings.api import to_fhir
from mappings.merge import merge

from . import charts, facts, gateway
from .render import page, zone_of
from .session import CSRF_FIELD, SignInRequired, Viewer, clear_session, csrf_ok, finish, require_viewer, set_session, viewer

#: the landing page and the API docs: always there; the console: unless FHIR_CONSOLE=false
public_router = APIRouter(include_in_schema=False)
router = APIRouter(include_in_schema=False)
STATIC = "/console/static"

#: most vital-sign observations the patient page charts
VITALS_SHOWN = 1000
#: types counted on the landing page
COUNTED = ("Patient", "Encounter", "Observation", "Condition", "Coverage", "Organization", "Practitioner")
#: national imports: form value -> (mapping kind, operation, type of the operation, registry wins)
IMPORTS: dict[str, tuple[str, str, str | None, bool]] = {
    "dukcapil": ("dukcapil", "import-dukcapil", "Patient", True),
    "bpjs-peserta": ("bpjs-peserta", "import-bpjs-peserta", None, False),
    "sep": ("sep", "import-sep", "Encounter", True),
    "pcare": ("pcare", "import-pcare", "Encounter", True),
}

Handler = Callable[..., Awaitable[Response]]


def console_page(handler: Handler) -> Handler:
    """Sign-in redirects and FHIR refusals as pages, for every console route."""

    @functools.wraps(handler)
    async def wrapped(request: Request, *args: Any, **kwargs: Any) -> Response:
        try:
            return await handler(request, *args, **kwargs)
        except SignInRequired:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/console/login?next={quote(target)}", status_code=303)
        except FhirError as exc:
            template = "forbidden.html" if exc.status in (401, 403) else "error.html"
            return page(request, template, exc.status, issues=exc.issues, status=exc.status)

    return wrapped


async def _form(request: Request) -> dict[str, Any]:
    """The POSTed form, after the CSRF check (403 page when it fails)."""
    form = await request.form()
    if not csrf_ok(request, form.get(CSRF_FIELD)):
        raise FhirError(403, [Issue("error", "security", "csrf")])
    return dict(form)


# -- landing page and API docs -----------------------------------------------------------
@public_router.get("/", response_class=HTMLResponse)
async def landing(request: Request) -> Response:
    st = request.app.state.fhir
    console_on = st.settings.console
    current = viewer(request) if console_on or st.settings.auth == "none" else None
    counts: dict[str, int | str] = {}
    if current is not None:
        for res_type in COUNTED:
            try:
                bundle = await gateway.search(request, current, res_type, [("_summary", "count")])
                counts[res_type] = bundle.get("total", 0)
            except FhirError:
                counts[res_type] = "-"
    from fhir_server.api import http

    return page(
        request,
        "landing.html",
        engine=st.db.engine.dialect.name,
        base=http.base_url(request, st.settings.base_url),
        counts=counts,
    )


@public_router.get("/docs", response_class=HTMLResponse)
async def api_docs(request: Request) -> Response:
    """Swagger UI from the vendored copy (static/swagger-ui): works with no internet access."""
    return get_swagger_ui_html(
        openapi_url=request.app.openapi_url or "/openapi.json",
        title=f"fhir-server-id {__version__} - API",
        swagger_js_url=f"{STATIC}/swagger-ui/swagger-ui-bundle.js",
        swagger_css_url=f"{STATIC}/swagger-ui/swagger-ui.css",
        swagger_favicon_url=f"{STATIC}/favicon.svg",
        swagger_ui_parameters={"validatorUrl": None},
    )


# -- sign-in ------------------------------------------------------------------------------
@router.get("/console/login", response_class=HTMLResponse)
async def login_form(request: Request, next: str = "/console") -> Response:
    return page(request, "login.html", next=_safe_next(next), failed="")


@router.post("/console/login", response_class=HTMLResponse)
@console_page
async def login(request: Request) -> Response:
    form = await _form(request)
    st = request.app.state.fhir
    target = _safe_next(str(form.get("next") or "/console"))
    if st.settings.auth == "none":
        return RedirectResponse(target, status_code=303)
    with st.db.write() as conn:
        user, reason = users.authenticate(conn, str(form.get("username") or ""), str(form.get("password") or ""))
        token = users.start_session(conn, user.username) if user is not None else None
    _audit_sign_in(request, str(form.get("username") or ""), 200 if token else 423 if reason == "locked" else 401)
    if token is None:
        return page(request, "login.html", 401, next=target, failed=reason)
    response = RedirectResponse(target, status_code=303)
    set_session(request, response, token)
    return response


def _audit_sign_in(request: Request, username: str, status: int) -> None:
    """Every sign-in attempt leaves an AuditEvent (operation ``$console-login``, the user as the
    agent; 401 wrong password or unknown user, 423 locked), so failed and locked attempts show."""
    client = request.scope.get("client")
    record = AuditRecord(
        "operation",
        status,
        operation="console-login",
        client_id=users.CLIENT_PREFIX + username[:64],
        address=client[0] if client else None,
        user_agent=request.headers.get("user-agent"),
    )
    request.app.state.fhir.recorder.record(record)


@router.post("/console/logout")
@console_page
async def logout(request: Request) -> Response:
    await _form(request)
    token = request.cookies.get("console_session")
    if token:
        with request.app.state.fhir.db.write() as conn:
            users.end_session(conn, token)
    response = RedirectResponse("/console/login", status_code=303)
    clear_session(response)
    return response


@router.get("/console/lang/{code}")
async def switch_language(request: Request, code: str, next: str = "/console") -> Response:
    response = RedirectResponse(_safe_next(next), status_code=303)
    if code in ("id", "en"):
        response.set_cookie("console_lang", code, max_age=365 * 86400, samesite="lax", path="/")
    return response


def _safe_next(target: str) -> str:
    """Only a path on this server (no open redirect to another site)."""
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/console"


# -- find a patient -------------------------------------------------------------------------
@router.get("/console", response_class=HTMLResponse)
@console_page
async def find(request: Request, nik: str = "", bpjs: str = "", name: str = "", birthdate: str = "") -> Response:
    v = require_viewer(request)
    results: list[dict[str, Any]] | None = None
    nik, bpjs, name, birthdate = nik.strip(), bpjs.strip(), name.strip(), birthdate.strip()
    if nik or bpjs:
        system, value = (S.NIK, nik) if nik else (S.BPJS_CARD, bpjs)
        bundle = await gateway.search(request, v, "Patient", [("identifier", f"{system}|{value}")])
        results = [_row(p, None) for p in gateway.resources(bundle)]
    elif name or birthdate:
        query = {"resourceType": "Patient", "name": [{"text": name}]} if name else {"resourceType": "Patient"}
        if birthdate:
            query["birthDate"] = birthdate
        parameters = {
            "resourceType": "Parameters",
            "parameter": [{"name": "resource", "resource": query}, {"name": "count", "valueInteger": 20}],
        }
        bundle = await gateway.operation(request, v, "match", "Patient", parameters)
        results = []
        for entry in bundle.get("entry", []):
            if entry.get("search", {}).get("mode") == "match":
                results.append(_row(entry["resource"], entry["search"], score_pair(extract(query), extract(entry["resource"])).reasons))
    return page(request, "find.html", results=results, q={"nik": nik, "bpjs": bpjs, "name": name, "birthdate": birthdate})


def _row(patient: dict[str, Any], search: dict[str, Any] | None, reasons: tuple[str, ...] = ()) -> dict[str, Any]:
    grade = next((e.get("valueCode") for e in (search or {}).get("extension", [])), None)
    return {
        "id": patient.get("id"),
        "name": facts.display_name(patient),
        "nik": facts.identifier(patient, S.NIK) or "",
        "bpjs": facts.identifier(patient, S.BPJS_CARD) or "",
        "birthdate": patient.get("birthDate") or "",
        "gender": patient.get("gender") or "unknown",
        "score": (search or {}).get("score"),
        "grade": grade,
        "reasons": reasons,
    }


# -- the patient page -------------------------------------------------------------------------
@router.get("/console/patients/{res_id}", response_class=HTMLResponse)
@console_page
async def patient_page(request: Request, res_id: str) -> Response:
    v = require_viewer(request)
    patient = await gateway.read(request, v, "Patient", res_id)
    ref = f"Patient/{res_id}"
    coverages = gateway.resources(await gateway.search(request, v, "Coverage", [("beneficiary", ref), ("_count", "50")]))
    encounters = gateway.resources(await gateway.search(request, v, "Encounter", [("subject", ref), ("_sort", "-date"), ("_count", "200")]))
    conditions = gateway.resources(await gateway.search(request, v, "Condition", [("subject", ref), ("_count", "200")]))
    # up to 1,000, charted in effective-time order (facts.vital_series sorts). Unsorted on purpose:
    # for 1,000 rows _sort=date cost 50-95 ms on SQLite, _sort=-_lastUpdated 260 ms on PostgreSQL,
    # no _sort 6-15 ms; the page says when there are more than it charts
    params = [("subject", ref), ("category", "vital-signs"), ("_count", str(VITALS_SHOWN))]
    vitals_bundle = await gateway.search(request, v, "Observation", params)
    observations = gateway.resources(vitals_bundle)
    vitals_more = any(link.get("relation") == "next" for link in vitals_bundle.get("link", []))
    nik = facts.identifier(patient, S.NIK)
    series = facts.vital_series(observations)
    tz = zone_of(request)
    svgs = [charts.line_chart(facts.VITALS[code][0], facts.VITALS[code][1], points, tz) for code, points in series.items()]
    return page(
        request,
        "patient.html",
        patient=patient,
        name=facts.display_name(patient),
        nik=facts.read_nik(nik, patient.get("gender"), patient.get("birthDate")) if nik else None,
        bpjs=facts.identifier(patient, S.BPJS_CARD),
        addresses=facts.addresses(patient),
        coverages=[(c, facts.coverage_active(c)) for c in coverages],
        encounters=encounters,
        conditions=conditions,
        charts=svgs,
        vitals_more=vitals_more,
        text=facts.codeable_text,
    )


# -- national imports -------------------------------------------------------------------------
@router.get("/console/import", response_class=HTMLResponse)
@console_page
async def import_form(request: Request) -> Response:
    v = require_viewer(request)
    _may_import(v, "dukcapil")
    return page(request, "import.html", kinds=list(IMPORTS), kind="dukcapil", payload="", preview=None, done=None)


def _may_import(v: Viewer, kind: str) -> tuple[str, str, str | None, bool]:
    if kind not in IMPORTS:
        raise FhirError.of(400, "invalid", f"kind must be one of {', '.join(IMPORTS)}")
    spec = IMPORTS[kind]
    v.principal.require_operation(spec[2], spec[1], affects_state=True)  # 403 before any work
    return spec


async def _payload(request: Request, form: dict[str, Any]) -> tuple[str, Any]:
    upload = form.get("file")
    text = str(form.get("payload") or "")
    if upload is not None and hasattr(upload, "read"):
        data = await upload.read()
        if data:
            text = data.decode("utf-8", "replace")
    try:
        return text, jsonio.loads_client(text.encode())
    except jsonio.DuplicateKey as exc:
        raise FhirError.of(400, "structure", str(exc)) from None
    except Exception:  # noqa: BLE001 - any parse failure is the user's input: a 400 page
        raise FhirError.of(400, "structure", "The payload is not valid JSON") from None


@router.post("/console/import", response_class=HTMLResponse)
@console_page
async def import_preview(request: Request) -> Response:
    """Map the payload (mappings/, no writes) and show each resource next to what is stored."""
    v = require_viewer(request)
    form = await _form(request)
    kind = str(form.get("kind") or "")
    mapping, _, _, registry_wins = _may_import(v, kind)
    text, payload = await _payload(request, form)
    result = to_fhir(mapping, payload)
    preview = []
    for entry in result.transaction_entries():
        incoming = entry["resource"]
        req = entry["request"]
        query = req.get("ifNoneExist") or req["url"].partition("?")[2]
        res_type = incoming["resourceType"]
        found = gateway.resources(await gateway.search(request, v, res_type, [*parse_qsl(query), ("_count", "2")]))
        stored = found[0] if found else None
        after = merge(stored, incoming, incoming_wins=registry_wins) if stored is not None and req["method"] == "PUT" else incoming
        preview.append(
            {
                "type": res_type,
                "stored_id": stored.get("id") if stored else None,
                "changes": _changes(stored, after) if stored is not None else [],
                "json": jsonio.dumps(incoming, pretty=True).decode(),
            }
        )
    warnings = [w.diagnostics for w in result.warnings]
    return page(request, "import.html", kinds=list(IMPORTS), kind=kind, payload=text, preview=preview, warnings=warnings, done=None)


def _changes(before: dict[str, Any], after: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(element path, stored value, value after the import) of each leaf that changes, e.g.
    ``address[0].line[0]``; id, meta and text are the server's and left out."""
    keep = {k: v for k, v in before.items() if k not in ("id", "meta", "text")}
    old, new = _flatten(keep), _flatten({k: v for k, v in after.items() if k not in ("id", "meta", "text")})
    return [(path, old.get(path, "-"), new.get(path, "-")) for path in sorted(set(old) | set(new)) if old.get(path) != new.get(path)]


def _flatten(value: Any, prefix: str = "") -> dict[str, str]:
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else key))
        return out
    if isinstance(value, list):
        out = {}
        for index, item in enumerate(value):
            out.update(_flatten(item, f"{prefix}[{index}]"))
        return out
    return {prefix: value if isinstance(value, str) else jsonio.dumps(value).decode()}


@router.post("/console/import/run", response_class=HTMLResponse)
@console_page
async def import_run(request: Request) -> Response:
    v = require_viewer(request)
    form = await _form(request)
    kind = str(form.get("kind") or "")
    _, name, res_type, _ = _may_import(v, kind)
    text, payload = await _payload(request, form)
    bundle = await gateway.operation(request, v, name, res_type, payload)
    done = [
        {"status": e.get("response", {}).get("status", ""), "location": e.get("response", {}).get("location", "")}
        for e in bundle.get("entry", [])
    ]
    return page(request, "import.html", kinds=list(IMPORTS), kind=kind, payload=text, preview=None, warnings=[], done=done)


# -- resource browser -------------------------------------------------------------------------
@router.get("/console/browse", response_class=HTMLResponse)
@console_page
async def browse_types(request: Request) -> Response:
    require_viewer(request)
    return page(request, "browse_types.html", types=RESOURCE_TYPES)


@router.get("/console/browse/{res_type}", response_class=HTMLResponse)
@console_page
async def browse_search(request: Request, res_type: str) -> Response:
    v = require_viewer(request)
    if not is_resource_type(res_type):
        raise FhirError.of(404, "not-found", f"'{res_type}' is not an R4 resource type")
    params = [(k, val) for k, val in request.query_params.multi_items() if val.strip() and k != "_count"]
    definitions = sorted((p.code, p.type) for p in params_for(res_type).values() if p.supported)
    bundle = await gateway.search(request, v, res_type, [*params, ("_count", "20")])
    rows = [
        {"id": r.get("id"), "summary": _summary(r), "updated": r.get("meta", {}).get("lastUpdated", "")} for r in gateway.resources(bundle)
    ]
    return page(
        request,
        "browse_search.html",
        res_type=res_type,
        definitions=definitions,
        values=dict(params),
        rows=rows,
        total=bundle.get("total"),
        next_query=_link_query(bundle, "next"),
        previous_query=_link_query(bundle, "previous"),
    )


def _link_query(bundle: dict[str, Any], relation: str) -> str | None:
    """The query string of a searchset's paging link, for the same console page."""
    url = next((link.get("url") for link in bundle.get("link", []) if link.get("relation") == relation), None)
    return urlparse(str(url)).query if url else None


def _summary(resource: dict[str, Any]) -> str:
    if resource.get("resourceType") == "Patient":
        return facts.display_name(resource)
    for key in ("code", "type", "class", "name", "title", "status"):
        value = resource.get(key)
        if isinstance(value, str):
            return value
        text = facts.codeable_text(value[0] if isinstance(value, list) and value else value)
        if text:
            return text
    return ""


@router.get("/console/browse/{res_type}/{res_id}", response_class=HTMLResponse)
@console_page
async def browse_resource(request: Request, res_type: str, res_id: str) -> Response:
    v = require_viewer(request)
    resource = await gateway.read(request, v, res_type, res_id)
    return page(
        request,
        "resource.html",
        res_type=res_type,
        res_id=res_id,
        text=jsonio.dumps(resource, pretty=True).decode(),
        issues=None,
        saved=False,
    )


@router.post("/console/browse/{res_type}/{res_id}", response_class=HTMLResponse)
@console_page
async def edit_resource(request: Request, res_type: str, res_id: str) -> Response:
    """``action=validate``: ``$validate`` (mode update); ``action=save``: validated, then updated."""
    v = require_viewer(request)
    v.principal.require(res_type, "update")  # a viewer gets the 403 page before anything is parsed
    form = await _form(request)
    text = str(form.get("resource") or "")
    try:
        resource = jsonio.loads_client(text.encode())
    except Exception as exc:  # noqa: BLE001 - the user's text: shown back with the error
        return page(
            request,
            "resource.html",
            400,
            res_type=res_type,
            res_id=res_id,
            text=text,
            issues=[Issue("error", "structure", str(exc) if isinstance(exc, jsonio.DuplicateKey) else "JSON")],
            saved=False,
        )
    outcome = await gateway.operation(request, v, "validate", res_type, resource, res_id)
    issues = [
        Issue(i.get("severity", ""), i.get("code", ""), i.get("diagnostics", ""), (i.get("expression") or [None])[0])
        for i in outcome.get("issue", [])
    ]
    errors = any(i.is_error for i in issues)
    saved = False
    if form.get("action") == "save" and not errors:
        answer = await gateway.call(request, v, "update", res_type, res_id, body=resource, method="PUT")
        text = (answer.body or b"").decode()
        text = jsonio.dumps(jsonio.loads(answer.body or b"{}"), pretty=True).decode()
        saved = True
    return page(request, "resource.html", 422 if errors else 200, res_type=res_type, res_id=res_id, text=text, issues=issues, saved=saved)


# -- audit log -------------------------------------------------------------------------------
_AUDIT_FILTERS = ("date", "agent", "entity-type", "action", "outcome", "subtype")


@router.get("/console/audit", response_class=HTMLResponse)
@console_page
async def audit_log(request: Request) -> Response:
    v = require_viewer(request)
    values = {k: val.strip() for k, val in request.query_params.items() if k in _AUDIT_FILTERS and val.strip()}
    # the agent is typed as the client id the trail shows (console users: "console:<name>")
    params = [(f"{k}:identifier", f"{CLIENT_SYSTEM}|{val}") if k == "agent" else (k, val) for k, val in values.items()]
    bundle = await gateway.search(request, v, "AuditEvent", [*params, ("_sort", "-date"), ("_count", "50")])
    rows = []
    for e in gateway.resources(bundle):
        agent = (e.get("agent") or [{}])[0].get("who", {})
        entity = _audit_entity(e.get("entity") or [])
        rows.append(
            {
                "recorded": e.get("recorded", ""),
                "agent": agent.get("identifier", {}).get("value") or agent.get("reference", ""),
                "action": e.get("action", ""),
                "subtype": ", ".join(c.get("code", "") for c in e.get("subtype", [])),
                "entity": entity,
                "outcome": e.get("outcomeDesc", e.get("outcome", "")),
            }
        )
    return page(request, "audit.html", rows=rows, values=values, filters=_AUDIT_FILTERS)


def _audit_entity(entities: list[dict[str, Any]]) -> str:
    """What an AuditEvent is about: the resource it names, else the type and the query searched."""
    first = entities[0] if entities else {}
    reference = first.get("what", {}).get("reference")
    if reference:
        return str(reference)
    res_type = first.get("type", {}).get("code", "")
    query = first.get("query")
    try:
        text = base64.b64decode(query).decode("utf-8", "replace") if query else ""
    except ValueError:
        text = ""
    return f"{res_type}?{unquote(text)}" if text else str(res_type)


# -- duplicate review (the MPI: Patient/$duplicates, $not-duplicate, $merge) -------------------
@router.get("/console/duplicates", response_class=HTMLResponse)
@console_page
async def duplicates_page(request: Request, grade: str = "possible") -> Response:
    v = require_viewer(request)
    answer = await gateway.call(
        request, v, "operation", "Patient", params=[("grade", grade), ("_count", "20")], operation="duplicates", method="GET"
    )
    pairs = []
    for p in jsonio.loads(answer.body or b"{}").get("parameter", []):
        if p.get("name") != "pair":
            continue
        parts: dict[str, Any] = {}
        for part in p.get("part", []):
            value = next((part[k] for k in part if k.startswith("value")), None)
            parts.setdefault(part["name"], []).append(value)
        ids = [parts[name][0]["reference"].split("/")[1] for name in ("patient-a", "patient-b")]
        people = []
        for res_id in ids:
            try:
                people.append(_row(await gateway.read(request, v, "Patient", res_id), None))
            except FhirError:
                people.append({"id": res_id, "name": "-", "nik": "", "bpjs": "", "birthdate": "", "gender": "unknown"})
        pairs.append(
            {"a": people[0], "b": people[1], "grade": parts["grade"][0], "score": parts["score"][0], "reasons": parts.get("reason", [])}
        )
    return page(request, "duplicates.html", pairs=pairs, grade=grade, done=None)


@router.post("/console/duplicates", response_class=HTMLResponse)
@console_page
async def duplicates_decide(request: Request) -> Response:
    """``not-duplicate``: the pair never comes back; ``merge``: patient B merged into patient A."""
    v = require_viewer(request)
    form = await _form(request)
    a, b = (str(form.get(name) or "") for name in ("a", "b"))
    refs = ({"reference": f"Patient/{a}"}, {"reference": f"Patient/{b}"})
    if form.get("decision") == "merge":
        v.principal.require_operation("Patient", "merge", affects_state=True)
        await gateway.operation(request, v, "merge", "Patient", _references(("target-patient", refs[0]), ("source-patient", refs[1])))
    else:
        v.principal.require_operation("Patient", "not-duplicate", affects_state=True)
        await gateway.operation(request, v, "not-duplicate", "Patient", _references(("patient-a", refs[0]), ("patient-b", refs[1])))
    return RedirectResponse(f"/console/duplicates?done={quote(str(form.get('decision')))}", status_code=303)


def _references(*named: tuple[str, dict[str, str]]) -> dict[str, Any]:
    """A Parameters resource of Reference values."""
    return {"resourceType": "Parameters", "parameter": [{"name": name, "valueReference": ref} for name, ref in named]}


def query_string(values: dict[str, str], **changes: str) -> str:
    return urlencode({**values, **changes})


__all__ = ["finish", "public_router", "router"]
