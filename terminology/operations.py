"""From FHIR operation parameters to engine calls: one function per terminology operation.

Each function takes the engine, a ``values(name) -> list`` getter (query-string strings and/or
``Parameters`` body values: ``value[x]`` contents or resources, as the HTTP layer collects them)
and, for instance-level calls (``ValueSet/123/$expand``), the stored ``instance`` resource. They
return the FHIR dict to send, or raise ``FhirError``. Parameter names are R4's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fhir_server.errors import FhirError

from .engine import TerminologyEngine

Values = Callable[[str], list[Any]]


def _one(values: Values, name: str) -> Any:
    found = values(name)
    if len(found) > 1:
        raise FhirError.of(400, "invalid", f"Parameter '{name}' may appear only once")
    return found[0] if found else None


def _str(values: Values, name: str) -> str | None:
    value = _one(values, name)
    if value is not None and not isinstance(value, str):
        raise FhirError.of(400, "invalid", f"Parameter '{name}' must be a string")
    return value


def _int(values: Values, name: str) -> int | None:
    value = _one(values, name)
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    try:
        return int(str(value))
    except ValueError:
        raise FhirError.of(400, "invalid", f"Parameter '{name}' must be an integer, not '{value}'") from None


def _bool(values: Values, name: str) -> bool:
    value = _one(values, name)
    if value is None or isinstance(value, bool):
        return bool(value)
    if str(value).lower() in ("true", "false"):
        return str(value).lower() == "true"
    raise FhirError.of(400, "invalid", f"Parameter '{name}' must be true or false, not '{value}'")


def _dict(values: Values, name: str, resource_type: str | None = None) -> dict | None:
    value = _one(values, name)
    if value is not None and (not isinstance(value, dict) or (resource_type and value.get("resourceType") != resource_type)):
        raise FhirError.of(400, "invalid", f"Parameter '{name}' must be a {resource_type or 'complex value'}")
    return value


def _instance_url(instance: dict | None, given: str | None) -> str | None:
    if instance is None:
        return given
    if given and given != instance.get("url"):
        raise FhirError.of(400, "invalid", f"url '{given}' is not the url of this instance ('{instance.get('url')}')")
    return instance.get("url")


def lookup(engine: TerminologyEngine, values: Values, instance: dict | None = None) -> dict:
    """CodeSystem/$lookup (type or instance level): code+system or coding; repeated ``property``."""
    coding = _dict(values, "coding") or {}
    system = _instance_url(instance, _str(values, "system") or coding.get("system"))
    code = _str(values, "code") or coding.get("code")
    if not system or not code:
        raise FhirError.of(400, "required", "$lookup needs system and code, or a coding")
    props = [str(p) for p in values("property")] or None
    return engine.lookup(
        system,
        code,
        _str(values, "version") or coding.get("version") or (instance or {}).get("version"),
        properties=props,
        code_system=instance,
    )


def validate_code_cs(engine: TerminologyEngine, values: Values, instance: dict | None = None) -> dict:
    """CodeSystem/$validate-code: url (or the instance, or ``codeSystem``) and code, coding or codeableConcept."""
    given = _dict(values, "codeSystem", "CodeSystem")
    resource = instance or given
    url = _instance_url(resource, _str(values, "url"))
    if not url:
        raise FhirError.of(400, "required", "CodeSystem/$validate-code needs url or a CodeSystem")
    return engine.validate_code_cs(
        url,
        code=_str(values, "code"),
        version=_str(values, "version"),
        display=_str(values, "display"),
        coding=_dict(values, "coding"),
        codeable_concept=_dict(values, "codeableConcept"),
        code_system=resource,
    )


def validate_code_vs(engine: TerminologyEngine, values: Values, instance: dict | None = None) -> dict:
    """ValueSet/$validate-code: url (or the instance, or ``valueSet``) and code+system, coding or codeableConcept."""
    value_set = instance or _dict(values, "valueSet", "ValueSet")
    url = _str(values, "url")
    if value_set is None and not url:
        raise FhirError.of(400, "required", "ValueSet/$validate-code needs url or a ValueSet")
    return engine.validate_code_vs(
        url,
        code=_str(values, "code"),
        system=_str(values, "system"),
        display=_str(values, "display"),
        coding=_dict(values, "coding"),
        codeable_concept=_dict(values, "codeableConcept"),
        value_set=value_set,
        value_set_version=_str(values, "valueSetVersion"),
        system_version=_str(values, "systemVersion"),
    )


def expand(engine: TerminologyEngine, values: Values, instance: dict | None = None) -> dict:
    """ValueSet/$expand: url (or the instance, or ``valueSet``), filter, count, offset."""
    value_set = instance or _dict(values, "valueSet", "ValueSet")
    url = _str(values, "url")
    if value_set is None and not url:
        raise FhirError.of(400, "required", "$expand needs url or a ValueSet")
    return engine.expand(
        url,
        value_set=value_set,
        version=_str(values, "valueSetVersion"),
        filter=_str(values, "filter"),
        count=_int(values, "count"),
        offset=_int(values, "offset"),
    )


def translate(engine: TerminologyEngine, values: Values, instance: dict | None = None) -> dict:
    """ConceptMap/$translate: code+system, coding or codeableConcept; url/conceptMap or source/target; reverse."""
    concept_map = instance or _dict(values, "conceptMap", "ConceptMap")
    return engine.translate(
        url=_str(values, "url"),
        code=_str(values, "code"),
        system=_str(values, "system"),
        version=_str(values, "version"),
        coding=_dict(values, "coding"),
        codeable_concept=_dict(values, "codeableConcept"),
        source=_str(values, "source"),
        target=_str(values, "target"),
        target_system=_str(values, "targetsystem"),
        reverse=_bool(values, "reverse"),
        conceptmap_version=_str(values, "conceptMapVersion"),
        concept_map=concept_map,
    )


def subsumes(engine: TerminologyEngine, values: Values, instance: dict | None = None) -> dict:
    """CodeSystem/$subsumes: system (or the instance) with codeA/codeB or codingA/codingB."""
    coding_a, coding_b = _dict(values, "codingA") or {}, _dict(values, "codingB") or {}
    system = _instance_url(instance, _str(values, "system") or coding_a.get("system") or coding_b.get("system"))
    for c in (coding_a, coding_b):
        if c.get("system") not in (None, system):
            raise FhirError.of(400, "invalid", f"codingA and codingB must be from '{system}'")
    code_a, code_b = _str(values, "codeA") or coding_a.get("code"), _str(values, "codeB") or coding_b.get("code")
    if not system or not code_a or not code_b:
        raise FhirError.of(400, "required", "$subsumes needs system and codeA/codeB (or codingA/codingB)")
    return engine.subsumes(system, code_a, code_b, _str(values, "version"), code_system=instance)


#: "Type/$name" -> adapter, for the HTTP layer's operation registry.
OPERATIONS: dict[str, Callable[[TerminologyEngine, Values, dict | None], dict]] = {
    "CodeSystem/$lookup": lookup,
    "CodeSystem/$validate-code": validate_code_cs,
    "CodeSystem/$subsumes": subsumes,
    "ValueSet/$expand": expand,
    "ValueSet/$validate-code": validate_code_vs,
    "ConceptMap/$translate": translate,
}
