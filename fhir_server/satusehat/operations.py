"""``$satusehat-status`` (a resource's sync state; the overview at the system level) and
``$satusehat-sync`` (send a resource again now), docs/satusehat.md.

Both need read on the resource's type (the system-level overview: read on every type) and, in
token mode, a dedicated scope: ``system/satusehat.read`` for the status, ``system/satusehat.write``
for ``$satusehat-sync`` (POST only: it changes the sync state). No wildcard grants these.
"""

from __future__ import annotations

from typing import Any

from fhir_server import jsonio
from fhir_server.errors import FhirError
from fhir_server.model.parameters import parameters
from fhir_server.operations.registry import Operation, OperationCall, OperationResult, one_parameter, register
from fhir_server.satusehat import store
from fhir_server.service.context import Services
from fhir_server.storage import claims
from fhir_server.timeutil import now_us, to_instant
from mappings.satusehat import SYNCED_TYPES


def _item_parameters(item: store.Item | None, res_type: str, running: bool = True) -> dict[str, Any]:
    if item is None:
        # not seen yet: pending while a sync runs (the worker reads the change log within a poll)
        params: list[dict[str, Any]] = [{"name": "status", "valueCode": "pending" if running else "not-applicable"}]
        params.append({"name": "attempts", "valueInteger": 0})
        if not running:
            params.append({"name": "last-error", "valueString": "the SATUSEHAT sync has never run on this server (not configured)"})
        return parameters(params)
    params = [{"name": "status", "valueCode": item.status}]
    if item.satusehat_id:
        params.append({"name": "satusehat-id", "valueString": item.satusehat_id})
    params.append({"name": "attempts", "valueInteger": item.attempts})
    if item.last_attempt_us is not None:
        params.append({"name": "last-attempt", "valueInstant": to_instant(item.last_attempt_us)})
    if item.last_error:
        params.append({"name": "last-error", "valueString": item.last_error})
    if item.rule:
        params.append({"name": "rule", "valueString": item.rule})
    if item.outcome and item.outcome.startswith("{"):
        params.append({"name": "outcome", "resource": jsonio.loads(item.outcome.encode())})
    if item.waits_for:
        params.append({"name": "waits-for", "valueReference": {"reference": item.waits_for}})
    params.append({"name": "facility", "valueString": item.facility})
    params.append({"name": "version", "valueInteger": item.version})
    return parameters(params)


READ_SCOPE = "system/satusehat.read"
WRITE_SCOPE = "system/satusehat.write"


def status(services: Services, call: OperationCall) -> OperationResult:
    call.principal.require_feature(READ_SCOPE, "$satusehat-status")
    db = services.resources.db
    if call.res_type is not None and call.res_id is not None:
        services.resources.read(call.res_type, call.res_id)  # 404 / 410 as a read would say
        with db.read() as conn:
            item = store.get(conn, call.res_type, call.res_id)
            running = item is not None or claims.cursor_position(conn, store.CONSUMER) is not None
        return OperationResult(jsonio.dumps(_item_parameters(item, call.res_type, running)))
    call.principal.require_reads(SYNCED_TYPES)
    listed = one_parameter(call, "status")
    if listed is not None and listed not in store.STATUSES:
        raise FhirError.of(400, "invalid", f"status must be one of {', '.join(store.STATUSES)}")
    facility = one_parameter(call, "facility")
    try:
        count = min(int(one_parameter(call, "_count") or 50), 500)
    except ValueError:
        raise FhirError.of(400, "invalid", "_count must be a number") from None
    with db.read() as conn:
        counts = store.counts(conn)
        oldest = store.oldest_pending(conn)
        items = store.by_status(conn, str(listed), count, str(facility) if facility else None) if listed else []
    params: list[dict[str, Any]] = []
    for facility in sorted({f for f, _ in counts}):
        parts: list[dict[str, Any]] = [{"name": "facility", "valueString": facility}]
        parts += [{"name": s, "valueInteger": counts.get((facility, s), 0)} for s in store.STATUSES]
        params.append({"name": "facility", "part": parts})
    for s in store.STATUSES:
        params.append({"name": s, "valueInteger": sum(n for (_, st), n in counts.items() if st == s)})
    if oldest is not None:
        params.append(
            {
                "name": "oldest-pending",
                "part": [
                    {"name": "resource", "valueReference": {"reference": oldest.ref}},
                    {"name": "since", "valueInstant": to_instant(oldest.queued_us)},
                ],
            }
        )
    # status=failed (held, ...): those items, with the reason, rule and SATUSEHAT's OperationOutcome
    for item in items:
        parts = [{"name": "resource", "valueReference": {"reference": item.ref}}, *_item_parameters(item, item.res_type)["parameter"]]
        params.append({"name": "item", "part": parts})
    return OperationResult(jsonio.dumps(parameters(params)))


async def sync(services: Services, call: OperationCall) -> OperationResult:
    call.principal.require_feature(WRITE_SCOPE, "$satusehat-sync")
    res_type, res_id = call.res_type or "", call.res_id or ""
    services.resources.read(res_type, res_id)
    with services.resources.db.read() as conn:
        item = store.get(conn, res_type, res_id)
    if item is None:
        raise FhirError.of(409, "conflict", f"{res_type}/{res_id} is not known to the SATUSEHAT sync yet (sync off, or not read yet)")
    await call.writer()(lambda conn: retry_in(conn, item), alone=True)
    with services.resources.db.read() as conn:
        return OperationResult(jsonio.dumps(_item_parameters(store.get(conn, res_type, res_id), res_type)))


def retry_in(conn: Any, item: store.Item) -> None:
    """Send ``item`` again as soon as a worker can (its partition's back-off cleared too)."""
    now = now_us()
    if item.status == "not-applicable":
        return
    store.update(conn, item, now, status="pending", waits_for=None, queued_us=now)
    store.forget_misses(conn)  # a Patient or Practitioner registered since is found now
    claims.set_paused(conn, store.QUEUE, item.partition, False, wanted_us=now)


register(Operation("satusehat-status", "satusehat-status", status, SYNCED_TYPES, system=True, instance=True))
register(Operation("satusehat-sync", "satusehat-sync", sync, SYNCED_TYPES, instance=True, affects_state=True))
