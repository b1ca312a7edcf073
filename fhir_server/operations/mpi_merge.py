"""``Patient/$merge`` and ``Patient/$unmerge`` (service/merge.py does the work, docs/mpi.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from fhir_server.errors import FhirError, Issue, operation_outcome
from fhir_server.operations.registry import Operation, OperationCall, OperationResult, one_parameter, parameter_values, register
from fhir_server.service.merge import LIFECYCLE, MergeRequest, MergeResult

if TYPE_CHECKING:  # pragma: no cover
    from fhir_server.service.context import Services


def _parameters(call: OperationCall, name: str) -> dict[str, Any]:
    if call.method != "POST" or not isinstance(call.body, dict) or call.body.get("resourceType") != "Parameters":
        raise FhirError.of(400, "invalid", f"POST a Parameters resource to ${name}")
    return call.body


def _boolean(call: OperationCall, name: str) -> bool:
    value = one_parameter(call, name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise FhirError.of(400, "invalid", f"{name} must be a boolean")
    return value


def _identifiers(call: OperationCall, name: str) -> list[Any]:
    return parameter_values(call, name)


async def merge(state: Services, call: OperationCall) -> OperationResult:
    given = _parameters(call, "merge")
    result_patient = one_parameter(call, "result-patient")
    preview, force = _boolean(call, "preview"), _boolean(call, "force")
    merger = state.merge

    def work(conn: Any) -> MergeResult:
        source = merger.resolve(
            conn, one_parameter(call, "source-patient"), _identifiers(call, "source-patient-identifier"), "source", call.base
        )
        target = merger.resolve(
            conn, one_parameter(call, "target-patient"), _identifiers(call, "target-patient-identifier"), "target", call.base
        )
        request = MergeRequest(source, target, result_patient, preview=preview, force=force)
        return merger.merge_in(conn, request, call.principal, call.base)

    if preview:
        with state.resources.db.read() as conn:
            outcome = work(conn)
    else:
        outcome = await call.writer()(work, alone=True)
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "input", "resource": given},
            {"name": "outcome", "resource": operation_outcome(outcome.issues)},
            {"name": "result", "resource": outcome.target},
        ],
    }
    return OperationResult(orjson.dumps(body))


async def unmerge(state: Services, call: OperationCall) -> OperationResult:
    _parameters(call, "unmerge")
    provenance = one_parameter(call, "provenance")
    source = one_parameter(call, "source-patient")
    if (provenance is None) == (source is None):
        raise FhirError.of(400, "invalid", "Give exactly one of provenance and source-patient")
    if provenance is not None:
        ref = provenance.get("reference") if isinstance(provenance, dict) else None
        if not isinstance(ref, str) or not ref.startswith("Provenance/"):
            raise FhirError.of(400, "invalid", "provenance must be a Reference to Provenance/[id]")
        provenance_id = ref.split("/")[1]
    else:
        ref = source.get("reference") if isinstance(source, dict) else None
        if not isinstance(ref, str) or not ref.startswith("Patient/"):
            raise FhirError.of(400, "invalid", "source-patient must be a Reference to Patient/[id]")
        provenance_id = _latest_merge(state, call, ref.split("/")[1])
    merger = state.merge
    written, issues = await call.writer()(lambda conn: merger.unmerge_in(conn, provenance_id, call.principal, call.base), alone=True)
    issues.append(
        Issue("information", "informational", f"Restored {len(written)} resources from Provenance/{provenance_id}: {', '.join(written)}")
    )
    return OperationResult(
        orjson.dumps({"resourceType": "Parameters", "parameter": [{"name": "outcome", "resource": operation_outcome(issues)}]})
    )


def _latest_merge(state: Services, call: OperationCall, source_id: str) -> str:
    """The latest merge Provenance that lists ``Patient/source_id`` among its targets."""
    call.principal.require("Provenance", "search-type")
    result = state.search.run(call.base, "Provenance", [("target", f"Patient/{source_id}"), ("_sort", "-_lastUpdated")], strict=True)
    for _, res_id, body in result.matches:
        prov = orjson.loads(body)
        codes = [c.get("code") for c in (prov.get("activity") or {}).get("coding", []) if c.get("system") == LIFECYCLE]
        if "merge" in codes:
            return str(res_id)
    raise FhirError.of(404, "not-found", f"No merge of Patient/{source_id} is recorded")


register(Operation("merge", "Patient-merge", merge, ("Patient",), type_level=True, affects_state=True))
register(Operation("unmerge", "Patient-unmerge", unmerge, ("Patient",), type_level=True, affects_state=True))
