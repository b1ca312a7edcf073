"""The Dukcapil and BPJS operations: native payload in, idempotent upsert, FHIR out (and back).

``$import-*`` take the JSON exactly as Dukcapil or BPJS returned it (envelope
or not), map it with :mod:`mappings`, and run one transaction of conditional
upserts keyed on NIK, BPJS card number or SEP number, so posting the same
payload twice changes nothing. A record that already exists is merged, not
replaced: Dukcapil (the civil registry) wins over what is stored, BPJS data
only fills gaps, so a BPJS import never erases an address Dukcapil supplied.
The reverse views render stored resources in the native shape.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from fhir_server import jsonio
from fhir_server.errors import FhirError, operation_outcome
from fhir_server.operations.registry import Operation, OperationCall, OperationResult, register
from mappings.api import from_fhir, to_fhir
from mappings.merge import merge

if TYPE_CHECKING:  # pragma: no cover
    from fhir_server.service.context import Services

JSON = {"Content-Type": "application/json; charset=utf-8"}


def _import(kind: str, *, registry_wins: bool) -> Callable[[Services, OperationCall], Awaitable[OperationResult]]:
    async def handler(state: Services, call: OperationCall) -> OperationResult:
        if call.body is None:
            raise FhirError.of(400, "required", f"${'import-' + kind} takes the native JSON payload as the body")
        result = to_fhir(kind, call.body)
        entries = result.transaction_entries()
        # every entry (Patient, Coverage, Condition, ...) is authorized as the caller's own
        # conditional write, not only the operation's own type
        body = await state.bundles.transaction(
            call.base,
            state.bundles.parse_entries(call.base, entries),
            principal=call.principal,
            write=call.writer(),
            merge=lambda stored, incoming: merge(stored, incoming, incoming_wins=registry_wins),
        )
        if result.warnings:  # NIK consistency warnings travel with the first entry's response
            response = jsonio.loads(body)
            first = response["entry"][0]["response"]
            first["outcome"] = operation_outcome(result.warnings)
            body = jsonio.dumps(response)
        return OperationResult(body)

    return handler


def _collect(state: Services, focus: dict[str, Any]) -> list[dict[str, Any]]:
    """The focus resource plus the local resources it references (one hop)."""
    found = [focus]
    seen = {f"{focus['resourceType']}/{focus['id']}"}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("reference")
            if isinstance(ref, str) and ref.count("/") == 1 and ref not in seen:
                seen.add(ref)
                res_type, res_id = ref.split("/")
                try:
                    stored = state.resources.read(res_type, res_id)
                except FhirError:
                    return  # a reference by identifier or to a deleted resource: nothing to add
                found.append(jsonio.loads(stored.body or b"{}"))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(focus)
    return found


def _view(kind: str, views: dict[str, str] | None = None) -> Callable[[Services, OperationCall], OperationResult]:
    def handler(state: Services, call: OperationCall) -> OperationResult:
        stored = state.resources.read(call.res_type or "", call.res_id or "")
        focus = jsonio.loads(stored.body or b"{}")
        chosen = kind
        if views:
            view = next((v for k, v in call.query if k == "view"), "request")
            if view not in views:
                raise FhirError.of(400, "invalid", f"view must be one of {', '.join(views)}")
            chosen = views[view]
        linked = _collect(state, focus)
        # the native document carries data of every linked resource: the caller must be able to
        # read each of their types, or the view would leak them
        call.principal.require_reads(r["resourceType"] for r in linked)
        native = from_fhir(chosen, linked)
        return OperationResult(jsonio.dumps(native), headers=JSON)

    return handler


register(
    Operation(
        "import-dukcapil",
        "Patient-import-dukcapil",
        _import("dukcapil", registry_wins=True),
        ("Patient",),
        type_level=True,
        affects_state=True,
    )
)
register(
    Operation(
        "import-bpjs-peserta", "import-bpjs-peserta", _import("bpjs-peserta", registry_wins=False), None, system=True, affects_state=True
    )
)
register(
    Operation("import-sep", "Encounter-import-sep", _import("sep", registry_wins=True), ("Encounter",), type_level=True, affects_state=True)
)
register(
    Operation(
        "import-pcare", "Encounter-import-pcare", _import("pcare", registry_wins=True), ("Encounter",), type_level=True, affects_state=True
    )
)
register(Operation("dukcapil", "Patient-dukcapil", _view("dukcapil"), ("Patient",), instance=True))
register(Operation("bpjs-peserta", "Coverage-bpjs-peserta", _view("bpjs-peserta"), ("Coverage",), instance=True))
register(Operation("sep", "Encounter-sep", _view("sep", {"request": "sep", "response": "sep-response"}), ("Encounter",), instance=True))
