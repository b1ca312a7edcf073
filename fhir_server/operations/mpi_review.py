"""Duplicate review: ``GET Patient/$duplicates`` lists the pairs the scan (or flagging on write)
recorded; ``POST Patient/$not-duplicate`` records a reviewer's "not the same person", so the pair
never comes back (docs/mpi.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from fhir_server.errors import FhirError, Issue, operation_outcome
from fhir_server.model.parameters import parameters
from fhir_server.mpi.review import PAIR_STATUSES
from fhir_server.mpi.scoring import GRADES, THRESHOLDS
from fhir_server.operations.registry import Operation, OperationCall, OperationResult, one_parameter, register

if TYPE_CHECKING:  # pragma: no cover
    from fhir_server.service.context import Services


def duplicates(state: Services, call: OperationCall) -> OperationResult:
    status = str(one_parameter(call, "status") or "open")
    if status not in PAIR_STATUSES:
        raise FhirError.of(400, "invalid", f"status must be one of {', '.join(PAIR_STATUSES)}")
    grade = str(one_parameter(call, "grade") or "possible")
    if grade not in GRADES:
        raise FhirError.of(400, "invalid", f"grade must be one of {', '.join(GRADES)}")
    count = _int(one_parameter(call, "_count"), "_count", state.default_count, low=1)
    offset = _int(one_parameter(call, "_offset"), "_offset", 0, low=0)
    patient = one_parameter(call, "patient")
    patient_id = str(patient).removeprefix("Patient/") if patient is not None else None
    rows = state.mpi.duplicates(
        status=status, min_score=THRESHOLDS[grade] if status == "open" else 0.0, limit=min(count, state.max_count) + 1, offset=offset,
        patient_id=patient_id,
    )  # fmt: skip
    more = len(rows) > min(count, state.max_count)
    params: list[dict[str, Any]] = []
    for row in rows[: min(count, state.max_count)]:
        parts: list[dict[str, Any]] = [
            {"name": "patient-a", "valueReference": {"reference": f"Patient/{row.a_id}"}},
            {"name": "patient-b", "valueReference": {"reference": f"Patient/{row.b_id}"}},
            {"name": "grade", "valueCode": row.grade},
            {"name": "score", "valueDecimal": row.score},
            {"name": "status", "valueCode": row.status},
        ]
        parts.extend({"name": "reason", "valueString": r} for r in row.reasons)
        params.append({"name": "pair", "part": parts})
    if more:
        params.append({"name": "next-offset", "valueInteger": offset + min(count, state.max_count)})
    return OperationResult(orjson.dumps(parameters(params)))


async def not_duplicate(state: Services, call: OperationCall) -> OperationResult:
    if call.method != "POST" or not isinstance(call.body, dict) or call.body.get("resourceType") != "Parameters":
        raise FhirError.of(400, "invalid", "POST a Parameters resource with patient-a and patient-b")
    ids = [_patient_id(one_parameter(call, name), name) for name in ("patient-a", "patient-b")]
    if ids[0] == ids[1]:
        raise FhirError.of(400, "invalid", "patient-a and patient-b are the same Patient")
    for res_id in ids:
        state.resources.read("Patient", res_id)  # 404 / 410
    reviewer = call.principal.stored_client_id
    await call.writer()(lambda conn: state.mpi.mark_in(conn, ids[0], ids[1], "not-duplicate", reviewer))
    text = f"Patient/{ids[0]} and Patient/{ids[1]} are recorded as not the same person"
    return OperationResult(orjson.dumps(operation_outcome([Issue("information", "informational", text)])))


def _patient_id(value: Any, name: str) -> str:
    ref = value.get("reference") if isinstance(value, dict) else None
    if not isinstance(ref, str) or not ref.startswith("Patient/") or len(ref.split("/")) != 2:
        raise FhirError.of(400, "invalid", f"{name} must be a Reference to Patient/[id]")
    return ref.split("/")[1]


def _int(value: Any, name: str, default: int, *, low: int) -> int:
    if value is None:
        return default
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise FhirError.of(400, "invalid", f"{name} must be an integer") from None
    if n < low:
        raise FhirError.of(400, "invalid", f"{name} must be at least {low}")
    return n


register(Operation("duplicates", "Patient-duplicates", duplicates, ("Patient",), type_level=True))
register(Operation("not-duplicate", "Patient-not-duplicate", not_duplicate, ("Patient",), type_level=True, affects_state=True))
