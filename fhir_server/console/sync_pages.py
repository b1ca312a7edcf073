"""What flows out of the server: the SATUSEHAT sync page and the subscriptions page.

Both read and act only through the pipeline, as an API client would: ``$satusehat-status``
(system/satusehat.read) and ``$satusehat-sync`` (system/satusehat.write) for the sync;
``Subscription/$status``, ``$delivery-log``, ``$replay`` and a PUT of the subscription (status
``off`` or ``requested``) for subscriptions. Header values and secrets are never in what these
answer (the subscription store keeps them out of the resource).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from fhir_server import jsonio
from fhir_server.errors import FhirError
from fhir_server.satusehat.setup import facilities as sync_facilities
from mappings.satusehat import SYNCED_TYPES

from . import gateway
from .render import page
from .routes import _form, console_page, router
from .session import require_viewer

#: the statuses the SATUSEHAT page lists items of (not-applicable ones are not the sync's business)
LISTED = ("failed", "held", "pending", "waiting", "synced")


def _value(part: dict[str, Any]) -> Any:
    return next((v for k, v in part.items() if k.startswith("value") or k == "resource"), None)


def _parts(param: dict[str, Any]) -> dict[str, Any]:
    return {p["name"]: _value(p) for p in param.get("part", [])}


# -- SATUSEHAT sync ---------------------------------------------------------------------------
@router.get("/console/satusehat", response_class=HTMLResponse)
@console_page
async def satusehat_page(request: Request, status: str = "failed", facility: str = "") -> Response:
    v = require_viewer(request)
    status = status if status in LISTED else "failed"
    params = [("status", status), ("_count", "100"), *([("facility", facility)] if facility else [])]
    # the operation first: a role without system/satusehat.read gets the 403 page either way
    answer = await gateway.call(request, v, "operation", params=params, operation="satusehat-status", method="GET")
    overview = jsonio.loads(answer.body or b"{}").get("parameter", [])
    st = request.app.state.fhir
    configured = [f.name for f in sync_facilities(st.settings, st.db)]
    counts = [_parts(p) for p in overview if p["name"] == "facility"]
    items = []
    for p in overview:
        if p["name"] != "item":
            continue
        parts = _parts(p)
        outcome = parts.get("outcome") or {}
        items.append(
            {
                **parts,
                "ref": parts["resource"]["reference"],
                "issues": [i.get("diagnostics") or (i.get("details") or {}).get("text") or i.get("code") for i in outcome.get("issue", [])],
                "outcome_json": jsonio.dumps(outcome, pretty=True).decode() if outcome else "",
            }
        )
    return page(
        request,
        "satusehat.html",
        configured=configured,
        counts=counts,
        statuses=LISTED,
        status=status,
        facility=facility,
        items=items,
        done=request.query_params.get("done", ""),
    )


@router.post("/console/satusehat/retry", response_class=HTMLResponse)
@console_page
async def satusehat_retry(request: Request) -> Response:
    """Send one failed or held resource again: ``$satusehat-sync``, as the API's clients do."""
    v = require_viewer(request)
    form = await _form(request)
    res_type, _, res_id = str(form.get("ref") or "").partition("/")
    if res_type not in SYNCED_TYPES or not res_id:
        raise FhirError.of(400, "invalid", f"ref must be Type/id of a synced type ({', '.join(SYNCED_TYPES)})")
    await gateway.operation(request, v, "satusehat-sync", res_type, {"resourceType": "Parameters"}, res_id)
    back = str(form.get("status") or "failed")
    return RedirectResponse(f"/console/satusehat?status={quote(back)}&done={quote(f'{res_type}/{res_id}')}", status_code=303)


# -- subscriptions -------------------------------------------------------------------------------
@router.get("/console/subscriptions", response_class=HTMLResponse)
@console_page
async def subscriptions_page(request: Request) -> Response:
    v = require_viewer(request)
    subs = gateway.resources(await gateway.search(request, v, "Subscription", [("_count", "100")]))
    states = await gateway.call(request, v, "operation", "Subscription", operation="status", method="GET") if subs else None
    events: dict[str, str] = {}
    for status in gateway.resources(jsonio.loads(states.body or b"{}")) if states is not None else []:
        values = {p["name"]: _value(p) for p in status.get("parameter", [])}
        sub_id = str((values.get("subscription") or {}).get("reference", "")).rsplit("/", 1)[-1]
        events[sub_id] = str(values.get("events-since-subscription-start") or "0")
    rows = []
    for sub in subs:
        channel = sub.get("channel") or {}
        log = await gateway.call(request, v, "operation", "Subscription", sub.get("id"), params=[("_count", "1")], operation="delivery-log")
        last = next((_parts(p) for p in jsonio.loads(log.body or b"{}").get("parameter", [])), None)
        rows.append(
            {
                "id": sub.get("id"),
                "status": sub.get("status", ""),
                "criteria": sub.get("criteria", ""),
                "endpoint": channel.get("endpoint", ""),
                "type": channel.get("type", ""),
                "error": sub.get("error", ""),
                "reason": sub.get("reason", ""),
                "events": events.get(str(sub.get("id")), "0"),
                "last": last,
            }
        )
    return page(request, "subscriptions.html", rows=rows, done=request.query_params.get("done", ""))


@router.post("/console/subscriptions", response_class=HTMLResponse)
@console_page
async def subscriptions_change(request: Request) -> Response:
    """``off``: stop deliveries; ``requested``: re-activate (handshake, then the backlog);
    ``replay``: deliver again from event ``from`` (``$replay``)."""
    v = require_viewer(request)
    v.principal.require("Subscription", "update")  # a viewer gets the 403 page before any work
    form = await _form(request)
    sub_id, action = str(form.get("id") or ""), str(form.get("action") or "")
    if action == "replay":
        try:
            first = int(str(form.get("from") or "1"))
        except ValueError:
            raise FhirError.of(400, "invalid", "from must be an event number") from None
        body = {"resourceType": "Parameters", "parameter": [{"name": "eventsSinceNumber", "valueInteger": first}]}
        await gateway.operation(request, v, "replay", "Subscription", body, sub_id)
    elif action in ("off", "requested"):
        # the resource as stored (header values and secrets read back as [redacted], which a PUT keeps)
        resource = await gateway.read(request, v, "Subscription", sub_id)
        resource["status"] = action
        resource.pop("error", None)
        await gateway.call(request, v, "update", "Subscription", sub_id, body=resource, method="PUT")
    else:
        raise FhirError.of(400, "invalid", "action must be off, requested or replay")
    return RedirectResponse(f"/console/subscriptions?done={quote(f'{action} {sub_id}')}", status_code=303)
