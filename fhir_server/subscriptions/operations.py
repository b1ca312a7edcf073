"""``$status``, ``$events``, ``$get-ws-binding-token`` (Backport IG 1.1.0), ``$delivery-log`` and
``$replay`` on Subscription.

The caller needs read on Subscription (the registry's rule for operations that change no
resource); ``$events`` and ``$get-ws-binding-token`` hand out which resources changed, so they
also need read on the subscription's type, and a binding token is given only to the client that
owns the subscriptions it binds (token mode); ``$replay`` changes the delivery state, so it needs
read and update on Subscription. Header values and secrets never appear (they are
not in the resource).
"""

from __future__ import annotations

import secrets
from typing import Any

from fhir_server import jsonio
from fhir_server.errors import FhirError
from fhir_server.model.parameters import parameters
from fhir_server.operations.registry import Operation, OperationCall, OperationResult, parameter_values, register
from fhir_server.service import bundles
from fhir_server.service.context import Services
from fhir_server.storage import claims
from fhir_server.storage import repository as repo
from fhir_server.subscriptions import notify, store, websocket
from fhir_server.timeutil import now_us, to_instant

_MAX_EVENTS = 1000


def _state(services: Services, sub_id: str) -> tuple[store.State, dict[str, Any] | None]:
    with services.resources.db.read() as conn:
        st = store.get(conn, sub_id)
        part = claims.partition_state(conn, store.queue_of(st.spec), sub_id) if st is not None else None
    if st is None:
        services.resources.read("Subscription", sub_id)  # 404 / 410 as a read would say
        raise FhirError.of(404, "not-found", f"Subscription/{sub_id} has no subscription state")
    return st, part


def _status_resource(call: OperationCall, services: Services, sub_id: str) -> dict[str, Any]:
    st, part = _state(services, sub_id)
    errors = []
    if st.status == "error" or (part is not None and part.get("last_error")):
        stored = jsonio.loads(services.resources.read("Subscription", sub_id).body or b"{}")
        errors.append(stored.get("error") or (part or {}).get("last_error") or "delivery failing")
    return notify.status_parameters(st.spec.base or call.base, sub_id, st.spec, st.status, "query-status", st.events, [], errors)


def _bundle(resources: list[dict[str, Any]], base: str) -> bytes:
    entries = [bundles.entry(f"urn:uuid:{r['id']}", jsonio.dumps(r), search={"mode": "match"}) for r in resources]
    return bundles.bundle("searchset", entries, total=len(entries))


def status(services: Services, call: OperationCall) -> OperationResult:
    if call.res_id is not None:
        ids = [call.res_id]
    else:
        ids = [str(v) for v in parameter_values(call, "id") for v in str(v).split(",") if v]
        if not ids:
            with services.resources.db.read() as conn:
                ids = [s.sub_id for s in store.all_states(conn)]
    # at the instance level id and status are ignored (the IG's OperationDefinition)
    wanted = {str(v) for v in parameter_values(call, "status") for v in str(v).split(",")} if call.res_id is None else set()
    found = []
    for sub_id in ids:
        try:
            resource = _status_resource(call, services, sub_id)
        except FhirError:
            if call.res_id is not None:
                raise
            continue
        if not wanted or _param(resource, "status") in wanted:
            found.append(resource)
    return OperationResult(_bundle(found, call.base))


def _param(resource: dict[str, Any], name: str) -> Any:
    return next((v for p in resource["parameter"] if p["name"] == name for k, v in p.items() if k.startswith("value")), None)


def _number(call: OperationCall, name: str) -> int | None:
    values = parameter_values(call, name)
    if not values:
        return None
    try:
        return int(str(values[0]))
    except ValueError:
        raise FhirError.of(400, "invalid", f"{name} must be a number") from None


def events(services: Services, call: OperationCall) -> OperationResult:
    sub_id = call.res_id or ""
    st, _ = _state(services, sub_id)
    call.principal.require_reads([st.spec.res_type])
    first = _number(call, "eventsSinceNumber") or 1
    last = _number(call, "eventsUntilNumber")
    if last is not None and last < first:
        raise FhirError.of(400, "invalid", "eventsUntilNumber is before eventsSinceNumber")
    content = next((str(v) for v in parameter_values(call, "content")), st.spec.content)
    if content not in ("empty", "id-only", "full-resource"):
        raise FhirError.of(400, "invalid", "content must be empty, id-only or full-resource")
    spec = st.spec.__class__(**{**st.spec.__dict__, "content": content})
    bodies: dict[tuple[str, str, int], bytes | None] = {}
    with services.resources.db.read() as conn:
        found = store.events(conn, sub_id, first, last, limit=_MAX_EVENTS)
        if content == "full-resource":
            for e in found:
                row = repo.get_version(conn, e.res_type, e.res_id, e.version)
                bodies[(e.res_type, e.res_id, e.version)] = row.body if row is not None else None
    body = notify.notification_bundle(st.spec.base or call.base, sub_id, spec, st.status, "query-event", st.events, found, bodies)
    return OperationResult(body)


def delivery_log(services: Services, call: OperationCall) -> OperationResult:
    sub_id = call.res_id or ""
    _state(services, sub_id)
    count = min(_number(call, "_count") or 50, 500)
    with services.resources.db.read() as conn:
        rows = store.attempts(conn, sub_id, count)
    params = []
    for r in rows:
        parts: list[dict[str, Any]] = [
            {"name": "notification-id", "valueString": r["notification_id"]},
            {"name": "kind", "valueCode": r["kind"]},
            {"name": "attempt", "valueInteger": r["attempt"]},
            {"name": "time", "valueInstant": to_instant(r["started_us"])},
            {"name": "duration-ms", "valueDecimal": round(r["duration_us"] / 1000, 3)},
            {"name": "outcome", "valueCode": r["outcome"]},
        ]
        if r["first_event"] is not None:
            parts += [
                {"name": "first-event", "valueString": str(r["first_event"])},
                {"name": "last-event", "valueString": str(r["last_event"])},
            ]
        if r["http_status"] is not None:
            parts.append({"name": "http-status", "valueInteger": r["http_status"]})
        if r["error"]:
            parts.append({"name": "error", "valueString": r["error"]})
        params.append({"name": "attempt", "part": parts})
    return OperationResult(jsonio.dumps(parameters(params)))


async def replay(services: Services, call: OperationCall) -> OperationResult:
    """Deliver an active subscription's events again from ``eventsSinceNumber`` on (the CLI's
    ``subscriptions replay``; the web console's replay button)."""
    sub_id = call.res_id or ""
    st, _ = _state(services, sub_id)
    first = _number(call, "eventsSinceNumber")
    if first is None or first < 1:
        raise FhirError.of(400, "invalid", "eventsSinceNumber (1 or more) is required")
    if st.status != "active":
        raise FhirError.of(422, "business-rule", f"Subscription/{sub_id} is {st.status}: re-activate it first (status requested)")
    await call.writer()(lambda conn: store.replay(conn, sub_id, first, now_us()))
    params = [{"name": "events-since-subscription-start", "valueString": str(st.events)}]
    return OperationResult(jsonio.dumps(parameters(params)))


async def ws_binding_token(services: Services, call: OperationCall) -> OperationResult:
    """A token for ``bind-with-token`` (``websocket.py``): for the instance's subscription, or at
    the type level for those named by ``id`` (none: every websocket subscription of the caller)."""
    principal = call.principal
    named = [v for value in parameter_values(call, "id") for v in str(value).split(",") if v]
    ids = [call.res_id] if call.res_id is not None else named  # the instance level ignores id (IG)
    with services.resources.db.read() as conn:
        if not ids:
            owned = [s for s in store.all_states(conn) if s.spec.channel == "websocket"]
            ids = [s.sub_id for s in owned if not principal.restricted or s.client_id == principal.stored_client_id]
            if not ids:
                raise FhirError.of(404, "not-found", "The caller has no websocket subscription")
        states = {sub_id: store.get(conn, sub_id) for sub_id in ids}
    for sub_id, st in states.items():
        if st is None:
            services.resources.read("Subscription", sub_id)  # 404 / 410 as a read would say
            raise FhirError.of(404, "not-found", f"Subscription/{sub_id} has no subscription state")
        principal.require_reads([st.spec.res_type])
        if principal.restricted and st.client_id != principal.stored_client_id:
            raise FhirError.of(403, "forbidden", f"Subscription/{sub_id} belongs to another client")
        if st.spec.channel != "websocket":
            raise FhirError.of(400, "invalid", f"Subscription/{sub_id} does not use the websocket channel")
        if st.status not in ("requested", "active"):
            raise FhirError.of(422, "business-rule", f"Subscription/{sub_id} is {st.status}: re-activate it first")
    token = secrets.token_urlsafe(32)
    expires = now_us() + websocket.TOKEN_SECONDS * 1_000_000
    client_id = principal.stored_client_id
    await call.writer()(lambda conn: store.add_ws_token(conn, websocket.token_hash(token), ids, client_id, expires))
    params: list[dict[str, Any]] = [
        {"name": "token", "valueString": token},
        {"name": "expiration", "valueDateTime": to_instant(expires)},
        *({"name": "subscription", "valueString": sub_id} for sub_id in ids),
        {"name": "websocket-url", "valueUrl": websocket.websocket_url(call.base)},
    ]
    return OperationResult(jsonio.dumps(parameters(params)))


register(Operation("status", "backport-subscription-status", status, ("Subscription",), type_level=True, instance=True))
register(Operation("events", "backport-subscription-events", events, ("Subscription",), instance=True))
register(
    Operation(
        "get-ws-binding-token",
        "backport-subscription-get-ws-binding-token",
        ws_binding_token,
        ("Subscription",),
        type_level=True,
        instance=True,
    )
)
register(Operation("replay", "Subscription-replay", replay, ("Subscription",), instance=True, affects_state=True))
register(Operation("delivery-log", "Subscription-delivery-log", delivery_log, ("Subscription",), instance=True))
