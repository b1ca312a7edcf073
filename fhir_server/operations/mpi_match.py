"""``Patient/$match`` (R4, operation-patient-match): the stored Patients that may be the person
described, scored by the master patient index (docs/mpi.md).

POST takes a Parameters resource (``resource``, ``onlyCertainMatches``, ``count``) or the Patient
itself as the body. GET cannot carry a resource, so it takes the Patient's matching fields as
search-style parameters (``identifier=system|value`` repeated, ``name``, ``birthdate``,
``gender``, ``phone``) plus ``onlyCertainMatches`` and ``count``. The answer is a searchset
Bundle, best match first, every entry with ``search.mode = match``, ``search.score`` (0..1) and
the ``match-grade`` extension; when a blocking key had more candidates than the limit, an
OperationOutcome entry (``search.mode = outcome``) says so.

When the Patient to match is a stored record (it has the ``id`` of one), the records a reviewer
marked not the same person (``$not-duplicate``) are left out; this server's own parameter
``includeCertainlyNot=true`` (POST) lists them last instead, graded ``certainly-not`` (score 0).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from fhir_server.errors import FhirError, Issue, operation_outcome
from fhir_server.operations.registry import Operation, OperationCall, OperationResult, one_parameter, register
from fhir_server.service import bundles

if TYPE_CHECKING:  # pragma: no cover
    from fhir_server.service.context import Services

MATCH_GRADE = "http://hl7.org/fhir/StructureDefinition/match-grade"
_GET_FIELDS = ("identifier", "name", "birthdate", "gender", "phone")
_CONTROL = ("onlyCertainMatches", "count", "_format", "_pretty")


def match(state: Services, call: OperationCall) -> OperationResult:
    patient = _patient(call)
    only_certain = _boolean(one_parameter(call, "onlyCertainMatches"), "onlyCertainMatches")
    certainly_not = _boolean(one_parameter(call, "includeCertainlyNot"), "includeCertainlyNot")
    count = _count(one_parameter(call, "count"), state.max_count)
    outcome = state.mpi.match(patient, only_certain=only_certain, count=count, certainly_not=certainly_not)

    entries = []
    for s in outcome.matches:
        search = {"extension": [{"url": MATCH_GRADE, "valueCode": s.match.grade}], "mode": "match", "score": s.match.score}
        entries.append(bundles.entry(f"{call.base}/Patient/{s.res_id}", s.body, search=search))
    if outcome.limited_keys:
        text = (
            f"The candidate limit ({state.mpi.per_key_limit} per blocking key) was reached for "
            f"{', '.join(_shown(k) for k in outcome.limited_keys)}: more records share these values than were compared, "
            "so a match may be missing. Add identifiers or a birth date to narrow the search."
        )
        oo = operation_outcome([Issue("warning", "too-costly", text)])
        entries.append(bundles.entry(None, orjson.dumps(oo), search={"mode": "outcome"}))
    return OperationResult(bundles.bundle("searchset", entries, total=len(outcome.matches)))


def _patient(call: OperationCall) -> dict[str, Any]:
    body = call.body
    if call.method == "POST" and isinstance(body, dict) and body.get("resourceType") == "Patient":
        return body
    if call.method == "POST" and isinstance(body, dict) and body.get("resourceType") == "Parameters":
        resource = one_parameter(call, "resource")
        if resource is None:
            raise FhirError.of(400, "required", "Parameter 'resource' (the Patient to match) is required", "Parameters.parameter")
        if not isinstance(resource, dict) or resource.get("resourceType") != "Patient":
            raise FhirError.of(400, "invalid", "Parameter 'resource' must be a Patient", "Parameters.parameter")
        return resource
    if call.method == "POST":
        raise FhirError.of(400, "invalid", "POST a Parameters resource (or the Patient itself) to $match")
    return _patient_from_query(call.query)


def _patient_from_query(query: list[tuple[str, str]]) -> dict[str, Any]:
    unknown = sorted({k for k, _ in query if k not in _GET_FIELDS and k not in _CONTROL})
    if unknown:
        raise FhirError.of(
            400, "not-supported", f"$match by GET takes {', '.join(_GET_FIELDS + _CONTROL[:2])}; unknown: {', '.join(unknown)}"
        )
    patient: dict[str, Any] = {"resourceType": "Patient"}
    identifiers = []
    for key, value in query:
        if key == "identifier":
            system, sep, code = value.rpartition("|")
            if not sep or not system or not code:
                raise FhirError.of(400, "invalid", "identifier must be system|value")
            identifiers.append({"system": system, "value": code})
        elif key == "name":
            patient.setdefault("name", []).append({"text": value})
        elif key == "birthdate":
            patient["birthDate"] = value
        elif key == "gender":
            patient["gender"] = value
        elif key == "phone":
            patient.setdefault("telecom", []).append({"system": "phone", "value": value})
    if identifiers:
        patient["identifier"] = identifiers
    return patient


def _boolean(value: Any, name: str) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    raise FhirError.of(400, "invalid", f"{name} must be true or false")


def _count(value: Any, max_count: int) -> int | None:
    if value is None:
        return None
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise FhirError.of(400, "invalid", "count must be a positive integer") from None
    if isinstance(value, bool) or n < 1:
        raise FhirError.of(400, "invalid", "count must be a positive integer")
    return min(n, max_count)


def _shown(key: str) -> str:
    """A blocking key as a reviewer reads it (the kind of value, not the value: it may be personal data)."""
    kinds = {"nik": "a NIK", "nk": "a NIK pattern", "ibu": "a mother NIK", "bpjs": "a BPJS card", "ihs": "an IHS number",
             "tel": "a phone number", "dn": "a birth date and name", "yn": "a birth year and name", "vn": "a village and name"}  # fmt: skip
    prefix = key.split(":", 1)[0]
    return kinds.get(prefix.rstrip("0123456789"), prefix)


register(Operation("match", "Patient-match", match, ("Patient",), type_level=True))
