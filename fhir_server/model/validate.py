"""Validation of every resource that is written.

Three layers, cheapest first:
1. ``check_structure``: our table-driven R4 checker (generated from the
   official R4 StructureDefinitions): R4 types only, unknown elements, JSON
   types of primitives and their regexes, cardinality, required bindings,
   safe narrative.
2. the fhir.resources R4B pydantic model of the type (a second opinion, on by
   default, ``FHIR_R4B_MODEL_CHECK``). It is skipped for the types whose R4
   and R4B definitions differ, and its known divergences from R4 are dropped:
   R4 allows ``Extension.valueMeta`` and primitive extensions such as
   ``_valueString`` inside an Extension, which the R4B models reject.

Problems in the shape of the resource answer 400; valid shapes that break a
rule (a code outside its required value set, unsafe narrative) answer 422.
"""

from __future__ import annotations

import typing
from collections.abc import Sequence
from contextlib import nullcontext
from functools import cache
from typing import Any

from pydantic import ValidationError

from fhir_server.errors import FhirError, Issue, error
from fhir_server.model.r4b_speedups import install as _install_r4b_speedups
from fhir_server.model.r4b_speedups import memo as r4b_memo
from fhir_server.model.structure import check_structure, expression_at

_install_r4b_speedups()  # same verdicts, ~2x faster model check (see the module)

#: IssueType codes that mean "well-formed, but breaks a rule" (HTTP 422)
_RULE_CODES = frozenset({"code-invalid", "business-rule", "invariant", "security"})

#: resource types defined differently in R4 and R4B (python-stack.md §1.5)
_R4B_DIFFERENT = frozenset({"ActivityDefinition", "PlanDefinition", "Evidence", "EvidenceVariable"})


@cache
def _r4b_model(res_type: str) -> Any:
    from fhir.resources.R4B import get_fhir_model_class

    try:
        return get_fhir_model_class(res_type)
    except (KeyError, ValueError, ImportError, AttributeError):
        return None  # an R4-only type: the structure check is all there is


def warm_up(res_type: str) -> None:
    """Build ``res_type``'s R4B model classes now (service/warm.py), and the classes of the
    datatypes it may hold (ContactPoint, Dosage, Extension, ...): fhir_core imports each on the
    first value that has one, inside a request (~150 ms of the first Synthea Bundles; all the
    datatypes of the common types: ~0.1 s and ~6 MB more at start-up)."""
    model = _r4b_model(res_type)
    if model is not None and model not in _WARMED:
        _warm_datatypes(model, _WARMED)


#: the model classes whose datatypes are built (the types share most of theirs)
_WARMED: set[Any] = set()


def _warm_datatypes(model: Any, seen: set[Any]) -> None:
    from fhir_core.types import FhirBase

    seen.add(model)
    for field in model.model_fields.values():
        pending = [field.annotation]
        while pending:
            kind = pending.pop()
            if args := typing.get_args(kind):  # list[X], X | None
                pending.extend(args)
            elif isinstance(kind, type) and issubclass(kind, FhirBase) and getattr(kind, "_model_klass", None):
                nested = kind.get_model_klass()  # imports and builds it (cached by fhir_core)
                if nested not in seen:
                    _warm_datatypes(nested, seen)


def _r4_only(loc: tuple[Any, ...]) -> bool:
    """An R4B model complaint about what R4 allows: ``Extension.valueMeta`` and the
    ``_valueString``-style primitive extensions of an extension's value."""
    if len(loc) < 3 or loc[-3] not in ("extension", "modifierExtension") or type(loc[-2]) is not int:
        return False
    last = loc[-1]
    return type(last) is str and (last == "valueMeta" or (last[:6] == "_value" and last[6:7].isupper()))


def model_issues(resource: dict[str, Any], *, memo: bool = False) -> list[Issue]:
    """Run the R4B pydantic model; its errors as Issues with FHIRPath expressions (structure.expression_at).

    ``memo``: elements validated before are not validated again (``r4b_speedups.memo``: same
    verdicts); only for a resource the structure checker passed."""
    res_type = resource.get("resourceType", "")
    model = None if res_type in _R4B_DIFFERENT else _r4b_model(res_type)
    if model is None:
        return []
    try:
        with r4b_memo() if memo else nullcontext():
            model.model_validate(resource)
    except ValidationError as exc:
        return [
            error("value", e["msg"], expression_at(resource, e.get("loc", ())) or res_type)
            for e in exc.errors(include_url=False)
            if not _r4_only(tuple(e.get("loc", ())))
        ]
    except (KeyError, TypeError, ValueError) as exc:  # fhir.resources raises these on odd nested types
        return [error("structure", f"Invalid resource: {exc}", res_type)]
    return []


def validate_resource(resource: dict[str, Any], *, r4b_model: bool = True) -> list[Issue]:
    """All issues of a resource (errors and warnings); empty when it is valid."""
    return validate_resources([resource], r4b_model=r4b_model)[0]


def validate_resources(
    resources: Sequence[dict[str, Any]], *, r4b_model: bool = True, extension_urls: list[set[str] | None] | None = None
) -> list[list[Issue]]:
    """``validate_resource`` of each, one layer at a time: every structure check, then the R4B
    model check of each resource the structure checker passed. The verdicts are the same; run
    back to back, each layer's code and tables stay in the CPU caches (a transaction Bundle's
    time: ~9 % less than resource by resource, docs/performance.md, session 17).
    ``extension_urls``: one empty set per resource, filled with its extensions' urls
    (``check_structure``); None where the structure check found an issue (not all are known)."""
    if extension_urls is None:
        found = [check_structure(resource) for resource in resources]
    else:
        found = [check_structure(resource, extension_urls=urls) for resource, urls in zip(resources, extension_urls, strict=True)]
        for i, issues in enumerate(found):
            if issues:
                extension_urls[i] = None
    if r4b_model:
        for resource, issues in zip(resources, found, strict=True):
            if not has_errors(issues):
                issues.extend(model_issues(resource, memo=True))  # the structure checker passed it
    return found


def has_errors(issues: list[Issue]) -> bool:
    return any(i.is_error for i in issues)


def raise_errors(issues: list[Issue]) -> list[Issue]:
    """Raise FhirError(400/422) when ``issues`` hold an error; otherwise return them (warnings)."""
    if has_errors(issues):
        raise FhirError(status_for(issues), issues)
    return issues


def status_for(issues: list[Issue]) -> int:
    errors = [i for i in issues if i.is_error]
    if errors and all(i.code in _RULE_CODES for i in errors):
        return 422
    return 400
