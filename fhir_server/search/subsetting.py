"""``_summary`` and ``_elements`` (R4 search.html#summary, #elements): one rule for every answer
that subsets a resource — the matches and included resources of a search, a read, a vread,
``GET metadata`` (docs/interop.md), and Bulk Data ``_elements`` (bulk/exporter.py). A subset is
tagged SUBSETTED so that nobody writes it back as the whole resource.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson

from ..errors import FhirError
from ..model.definitions import load_definitions
from .parameters import summary_info

SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}
SUMMARY_MODES = ("true", "text", "data", "count", "false")
#: kept in every subset (with the type's mandatory elements)
_ALWAYS = frozenset({"resourceType", "id", "meta"})


def element_names(raw: str) -> list[str]:
    """The names of one ``_elements`` value (``a,b``)."""
    return [e.strip() for e in raw.split(",") if e.strip()]


@dataclass(frozen=True, slots=True)
class Subsetting:
    """What ``_summary`` (``summary``) and ``_elements`` (``elements``) ask of each resource."""

    summary: str | None = None
    elements: list[str] | None = None

    def applies(self, *, included: bool = False) -> bool:
        """Whether a resource is subset; ``included``: an ``_include``/``_revinclude`` of a
        search, which R4 exempts from ``_elements`` ("The list of elements does not apply to
        included resources") but not from ``_summary``."""
        if self.summary in (None, "false"):
            return bool(self.elements) and not included
        return True

    def apply(self, body: bytes, res_type: str, *, included: bool = False) -> bytes:
        """``body`` subset (and tagged), or the same bytes when nothing was asked of it."""
        return subset(body, res_type, self.summary, self.elements) if self.applies(included=included) else body


def for_read(params: list[tuple[str, str]]) -> Subsetting:
    """``_summary`` / ``_elements`` of a read, vread or ``GET metadata``, checked as on a search
    (an unknown ``_summary`` is 400; an empty value asks nothing, docs/interop.md) but for
    ``_summary=count``, which counts a search's matches: 400 on one resource. Other parameters
    are not this function's."""
    summary, elements = None, None
    for name, raw in params:
        if raw == "" or name not in ("_summary", "_elements"):
            continue
        if name == "_elements":
            elements = element_names(raw)
        elif raw not in SUMMARY_MODES:
            raise FhirError.of(400, "invalid", f"_summary: '{raw[:40]}' is not one of {', '.join(SUMMARY_MODES)}", "_summary")
        elif raw == "count":
            raise FhirError.of(400, "invalid", "_summary=count counts the matches of a search; a read answers one resource", "_summary")
        else:
            summary = raw
    return Subsetting(summary, elements)


def subset(body: bytes, res_type: str, mode: str | None, elements: list[str] | None) -> bytes:
    """``body`` reduced as ``_summary=mode`` (true, text, data) or, without a mode, to the
    top-level ``elements`` and the mandatory ones, and tagged SUBSETTED."""
    doc = orjson.loads(body)
    info = summary_info(res_type)
    always = _ALWAYS | set(info["mandatory"])
    if mode == "data":
        doc.pop("text", None)
    elif mode == "true":
        doc = _summary(doc, res_type, res_type, _summary_tree(res_type))
    else:
        keep = always | ({"text"} if mode == "text" else set(elements or ()))
        choice = set(info["choice"]) & keep
        doc = {k: v for k, v in doc.items() if _keep(k, keep, choice)}
    meta = dict(doc.get("meta") or {})
    tags = list(meta.get("tag") or [])
    if not any(t.get("code") == "SUBSETTED" and t.get("system") == SUBSETTED["system"] for t in tags):
        tags.append(SUBSETTED)
    meta["tag"] = tags
    doc["meta"] = meta
    return orjson.dumps(doc)


def _keep(key: str, keep: frozenset[str] | set[str], choice: set[str]) -> bool:
    name = key[1:] if key.startswith("_") else key
    if name in keep:
        return True
    return any(name.startswith(c) and name[len(c) :][:1].isupper() for c in choice)


# -- _summary=true: the isSummary (and mandatory) elements at every level of the resource's own
# backbone elements; a data type's value is kept whole (its elements are all in the summary)

#: element path -> JSON name -> the path whose children a backbone value has (None: a data type)
_Tree = dict[str, dict[str, "str | None"]]


@lru_cache(maxsize=256)
def _summary_tree(res_type: str) -> _Tree:
    """The summary elements of ``res_type`` by parent path (R4 StructureDefinitions: ``isSummary``
    or ``min > 0``); a content reference (``Questionnaire.item.item``) has the children of the
    element it names."""
    tree: _Tree = {res_type: {}}
    for el in load_definitions()["types"].get(res_type, {}).get("elements", []):
        if not (el.get("summary") or el.get("min", 0) > 0):
            continue
        parent = el["path"].rpartition(".")[0]
        ref = el.get("contentReference")
        backbone = ref[1:] if ref else (el["path"] if "BackboneElement" in el["names"].values() else None)
        for name in el["names"]:
            tree.setdefault(parent, {})[name] = backbone
    return tree


def _summary(node: dict[str, Any], path: str, res_type: str, tree: _Tree) -> dict[str, Any]:
    kept = tree.get(path, {})
    out: dict[str, Any] = {}
    for key, value in node.items():
        if path == res_type and key in _ALWAYS:
            out[key] = value
            continue
        name = key[1:] if key.startswith("_") else key
        if name not in kept:
            continue
        child = kept[name]
        if child is None or key.startswith("_"):
            out[key] = value
        elif isinstance(value, list):
            out[key] = [_summary(v, child, res_type, tree) if isinstance(v, dict) else v for v in value]
        elif isinstance(value, dict):
            out[key] = _summary(value, child, res_type, tree)
        else:
            out[key] = value
    return out
