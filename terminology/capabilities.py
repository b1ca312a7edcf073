"""The TerminologyCapabilities resource (``GET [base]/metadata?mode=terminology``, R4
terminologycapabilities.html): what the engine really serves, read from its registry.

- ``codeSystem``: every code system whose concepts the engine holds (a CodeSystem stored with
  ``content: not-present`` cannot answer ``$lookup`` or ``$validate-code``, so it is left out),
  each version, the default (what a request without a version gets), the filters a ValueSet
  compose may apply to it and its properties; ``$subsumes`` works on every one of them.
- ``expansion``: flat (no ``contains`` nesting), paged by ``count``/``offset``, never incomplete
  (too large an expansion without ``count`` is refused with 422, not truncated).
- ``validateCode.translations`` false: ``$validate-code`` does not check a code's translations.
- ``translation.needsMap`` false: ``$translate`` picks the maps by ``source``/``target`` when no map
  is named.
- no ``closure``: ``$closure`` is not implemented.
"""

from __future__ import annotations

from typing import Any

from .codesystem import CodeSystemProvider
from .engine import TerminologyEngine

#: the $expand parameters the operation reads besides the value set itself (operations.expand)
EXPANSION_PARAMETERS = (
    ("filter", "Case-insensitive word-prefix match on displays"),
    ("count", "Page size; expansion.total is always the full size"),
    ("offset", "Start of the page"),
    ("valueSetVersion", "Version of the value set named by url"),
)

#: filter operators on the concept itself and on a property (codesystem.filter_predicate)
CONCEPT_FILTER_OPS = ["=", "is-a", "descendent-of", "is-not-a", "regex", "in", "not-in", "generalizes"]
PROPERTY_FILTER_OPS = ["=", "in", "not-in", "regex", "exists"]


def terminology_capabilities(engine: TerminologyEngine, *, base: str, date: str, software: dict[str, str]) -> dict[str, Any]:
    code_systems = []
    for versions, default in engine.registry.code_systems():
        served = [v for v in versions if v.has_content()]
        if not served:
            continue
        entry: dict[str, Any] = {"uri": served[0].url}
        # tcp-7: with several versions every one needs a code (a versionless one is then left out)
        listed = [_version(v, v is default) for v in served if v.version is not None or len(served) == 1]
        if listed:
            entry["version"] = listed
        entry["subsumption"] = True
        code_systems.append(entry)
    code_systems.sort(key=lambda cs: cs["uri"])
    return {
        "resourceType": "TerminologyCapabilities",
        "status": "active",
        "date": date,
        "publisher": "fhir-server-id contributors",
        "kind": "instance",
        "software": software,
        "implementation": {"description": "Terminology services of the fhir-server-id FHIR R4 server", "url": base},
        "lockedDate": False,
        "codeSystem": code_systems,
        "expansion": {
            "hierarchical": False,
            "paging": True,
            "incomplete": False,
            "parameter": [{"name": name, "documentation": doc} for name, doc in EXPANSION_PARAMETERS],
            "textFilter": "Case-insensitive, accent-insensitive word-prefix match: every word of the filter starts a word of the display",
        },
        "validateCode": {"translations": False},
        "translation": {"needsMap": False},
    }


def _version(cs: CodeSystemProvider, is_default: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if cs.version is not None:
        out["code"] = cs.version
    out["isDefault"] = is_default
    out["compositional"] = False
    properties = sorted(cs.property_types)
    out["filter"] = [{"code": "concept", "op": CONCEPT_FILTER_OPS}] + [{"code": p, "op": PROPERTY_FILTER_OPS} for p in properties]
    out["property"] = properties
    return out
