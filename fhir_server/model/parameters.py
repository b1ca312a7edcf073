"""The shape of a Parameters resource that an operation or a FHIRPath Patch reads, and the
Parameters an operation answers.

``Parameters.parameter`` and each ``part`` are arrays of objects. The code that reads them
iterates them before any validation of the body as a whole (an operation's input is read as
it comes), so a number or an array of strings there is refused here, with a 400 naming it,
instead of failing wherever it is first iterated.
"""

from __future__ import annotations

from typing import Any

from fhir_server.errors import FhirError


def parameters(params: list[dict[str, Any]]) -> dict[str, Any]:
    """The Parameters resource holding ``params``; with none, no ``parameter`` element at all (an
    empty array is not FHIR JSON)."""
    return {"resourceType": "Parameters", "parameter": params} if params else {"resourceType": "Parameters"}


def parameter_list(body: dict[str, Any]) -> list[dict[str, Any]]:
    """``body["parameter"]`` (absent: empty); FhirError 400 unless an array of objects."""
    return _objects(body.get("parameter"), "Parameters.parameter")


def part_list(parameter: dict[str, Any], where: str) -> list[dict[str, Any]]:
    """``parameter["part"]`` (absent: empty) of the parameter at ``where``; FhirError 400
    unless an array of objects."""
    return _objects(parameter.get("part"), f"{where}.part")


def _objects(value: Any, where: str) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise FhirError.of(400, "structure", f"{where} must be an array of objects", where)
    return value
