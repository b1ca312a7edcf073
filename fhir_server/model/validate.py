"""Validation of every resource that is written.

Three layers, cheapest first:
1. ``check_structure``: our table-driven R4 checker (generated from the
   official R4 StructureDefinitions): R4 types only, unknown elements, JSON
   types of primitives and their regexes, cardinality, required bindings,
   safe narrative.
2. the fhir.resources R4B pydantic model of the type (when R4B has one; R4 and
   R4B are identical for all but a few types), which catches what regexes
   cannot, such as impossible calendar dates.

Problems in the shape of the resource answer 400; valid shapes that break a
rule (a code outside its required value set, unsafe narrative) answer 422.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydantic import ValidationError

from fhir_server.errors import FhirError, Issue, error
from fhir_server.model.structure import check_structure

#: IssueType codes that mean "well-formed, but breaks a rule" (HTTP 422)
_RULE_CODES = frozenset({"code-invalid", "business-rule", "invariant", "security"})


@lru_cache(maxsize=None)
def _r4b_model(res_type: str) -> Any:
    from fhir.resources.R4B import get_fhir_model_class

    try:
        return get_fhir_model_class(res_type)
    except (KeyError, ValueError, ImportError, AttributeError):
        return None  # an R4-only type: the structure check is all there is


def _expression(res_type: str, loc: tuple[Any, ...]) -> str:
    path = res_type
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part != "__root__":
            path += f".{part}"
    return path


def model_issues(resource: dict[str, Any]) -> list[Issue]:
    """Run the R4B pydantic model; its errors as Issues with FHIRPath-like locations."""
    res_type = resource.get("resourceType", "")
    model = _r4b_model(res_type)
    if model is None:
        return []
    try:
        model.model_validate(resource)
    except ValidationError as exc:
        return [
            error("value", e["msg"], _expression(res_type, tuple(e.get("loc", ()))))
            for e in exc.errors(include_url=False)
        ]
    except (KeyError, TypeError, ValueError) as exc:  # fhir.resources raises these on odd nested types
        return [error("structure", f"Invalid resource: {exc}", res_type)]
    return []


def validate_resource(resource: dict[str, Any]) -> list[Issue]:
    """All issues of a resource (errors and warnings); empty when it is valid."""
    issues = check_structure(resource)
    if any(i.severity in ("error", "fatal") for i in issues):
        return issues
    return issues + model_issues(resource)


def status_for(issues: list[Issue]) -> int:
    errors = [i for i in issues if i.severity in ("error", "fatal")]
    if errors and all(i.code in _RULE_CODES for i in errors):
        return 422
    return 400


def ensure_valid(resource: dict[str, Any]) -> list[Issue]:
    """Raise FhirError(400/422) when invalid; otherwise return the warnings."""
    issues = validate_resource(resource)
    if any(i.severity in ("error", "fatal") for i in issues):
        raise FhirError(status_for(issues), issues)
    return issues
