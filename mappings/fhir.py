"""Small builders and readers for FHIR JSON shared by the mappings (codings, extensions, references)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from mappings.normalize import as_text, invalid, missing
from terminology import indonesia

_ICD10 = re.compile(r"^[A-Z][0-9]{2}(\.?[0-9A-Z]{1,4})?$")


def coding(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"system": system, "code": code}
    if display:
        out["display"] = display
    return out


def code_from(codesystem: str, value: Any, field: str, *, display: str | None = None, by_label: bool = False) -> dict[str, Any] | None:
    """A Coding of ``codesystem`` for a native code (or label with ``by_label``).

    Unknown values are an error when the CodeSystem is complete; for fragments (BPJS lists we only
    partly know) the code flows through with the native label as display.
    """
    text = as_text(value)
    if text is None:
        return None
    concept = indonesia.match_label(codesystem, text) if by_label else indonesia.lookup(codesystem, text)
    if concept is not None:
        return coding(codesystem, concept.code, concept.display)
    if indonesia.is_complete(codesystem):
        name = codesystem.rsplit("/", 1)[-1]
        raise invalid(field, f"'{text}' is not a known {name} value", code="code-invalid")
    return coding(codesystem, text, display)


def concept_of(codesystem: str, value: Any, field: str, **kw: Any) -> dict[str, Any] | None:
    c = code_from(codesystem, value, field, **kw)
    return {"coding": [c]} if c else None


def find_coding(concept: dict[str, Any] | None, system: str) -> dict[str, Any] | None:
    if not concept:
        return None
    return next((c for c in concept.get("coding", []) if c.get("system") == system), None)


def code_in(concept: dict[str, Any] | None, system: str) -> str | None:
    c = find_coding(concept, system)
    return c.get("code") if c else None


def translated(conceptmap: str, code: str, *, reverse: bool = False) -> dict[str, Any] | None:
    targets = [t for t in indonesia.translate(conceptmap, code, reverse=reverse) if t.equivalence != "unmatched"]
    if not targets:
        return None
    t = targets[0]
    return coding(t.system, t.code, t.display)


def identifier(system: str, value: str, *, use: str | None = None, type_code: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if use:
        out["use"] = use
    if type_code:
        out["type"] = {"coding": [coding("http://terminology.hl7.org/CodeSystem/v2-0203", type_code)]}
    out["system"] = system
    out["value"] = value
    return out


def identifier_value(resource_or_ref: dict[str, Any] | None, system: str) -> str | None:
    """The value of the identifier with ``system`` on a resource, or of a Reference's logical identifier."""
    if not resource_or_ref:
        return None
    ids = resource_or_ref.get("identifier")
    if isinstance(ids, dict):
        ids = [ids]
    for ident in ids or []:
        if ident.get("system") == system:
            return ident.get("value")
    return None


def logical_reference(
    resource_type: str, system: str, value: str, display: str | None = None, reference: str | None = None
) -> dict[str, Any]:
    """A Reference by identifier (valid without the target on the server), optionally also by URL."""
    out: dict[str, Any] = {}
    if reference:
        out["reference"] = reference
    out["type"] = resource_type
    out["identifier"] = {"system": system, "value": value}
    if display:
        out["display"] = display
    return out


def extension(url: str, **value: Any) -> dict[str, Any]:
    ((key, v),) = value.items()
    return {"url": url, key: v}


def get_extension(element: dict[str, Any] | None, url: str) -> dict[str, Any] | None:
    if not element:
        return None
    return next((e for e in element.get("extension", []) if e.get("url") == url), None)


def extension_value(element: dict[str, Any] | None, url: str) -> Any:
    ext = get_extension(element, url)
    if not ext:
        return None
    return next((v for k, v in ext.items() if k.startswith("value")), None)


# --- Complex extensions holding native fields that FHIR has no element for -------------------------
#
# A "field spec" is (native name, value type, code system or None). Values are packed into sub-extensions
# named after the native field so that the reverse mapping is mechanical and nothing is lost.

FieldSpec = tuple[str, str, str | None]


def pack(url: str, values: dict[str, Any], specs: Iterable[FieldSpec]) -> dict[str, Any] | None:
    """A complex extension with one sub-extension per present value; None when all are absent."""
    subs = []
    for name, kind, system in specs:
        v = values.get(name)
        if v is None:
            continue
        if kind == "Coding":
            subs.append({"url": name, "valueCoding": v if isinstance(v, dict) else coding(system or "", v)})
        else:
            subs.append({"url": name, f"value{kind}": v})
    return {"url": url, "extension": subs} if subs else None


def unpack(element: dict[str, Any] | None, url: str) -> dict[str, Any]:
    """The sub-extension values of a complex extension, by name (codings reduced to their code)."""
    ext = get_extension(element, url)
    out: dict[str, Any] = {}
    for sub in (ext or {}).get("extension", []):
        for k, v in sub.items():
            if k.startswith("value"):
                out[sub["url"]] = v.get("code") if k == "valueCoding" else v
    return out


def icd10(value: Any, field: str) -> tuple[str, str | None]:
    """An ICD-10 code from ``I10`` or a response's ``"A15 - Respiratory tuberculosis"``."""
    text = as_text(value)
    if text is None:
        raise missing(field)
    code, _, display = text.partition(" - ")
    code = code.strip().upper()
    if not _ICD10.match(code):
        raise invalid(field, f"'{code}' is not an ICD-10 code", code="code-invalid")
    if len(code) > 3 and "." not in code:
        code = f"{code[:3]}.{code[3:]}"
    return code, display.strip() or None
