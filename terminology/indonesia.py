"""Indonesian code lists (Dukcapil, BPJS) shipped as FHIR CodeSystem and ConceptMap JSON.

The files in ``terminology/content/indonesia/`` are the single source of truth: the mappings look codes
up here instead of keeping private tables, and the terminology server serves the same files. Everything
is loaded once, on first use, and is read-only afterwards.

Label matching exists because Dukcapil and BPJS send labels, not codes, and spell them inconsistently
("KATHOLIK"/"KATOLIK", "BELUM/TIDAK BEKERJA"/"BELUM / TIDAK BEKERJA"): a label matches a concept's
display or one of its designations, first exactly (after upper-casing and collapsing spaces), then
ignoring every character that is not a letter or digit, unless that looser key is ambiguous.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

CONTENT_DIR = Path(__file__).parent / "content" / "indonesia"

_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class Concept:
    system: str
    code: str
    display: str
    english: str | None = None


@dataclass(frozen=True, slots=True)
class Target:
    system: str
    code: str
    display: str | None
    equivalence: str


@dataclass(slots=True)
class _CodeSystem:
    resource: dict[str, Any]
    concepts: dict[str, Concept]
    exact: dict[str, str]
    loose: dict[str, str]


@dataclass(slots=True)
class _ConceptMap:
    resource: dict[str, Any]
    source: str
    target: str
    forward: dict[str, list[Target]]
    reverse: dict[str, list[Target]]


_WS = re.compile(r"\s+")
_NON_ALNUM = re.compile(r"[^0-9A-Z]")


def _exact_key(label: str) -> str:
    return _WS.sub(" ", str(label).strip().upper())


def _loose_key(label: str) -> str:
    return _NON_ALNUM.sub("", _exact_key(label))


def _build_codesystem(res: dict[str, Any]) -> _CodeSystem:
    url = res["url"]
    concepts: dict[str, Concept] = {}
    exact: dict[str, str] = {}
    loose: dict[str, set[str]] = {}
    for c in res.get("concept", []):
        designations = c.get("designation", [])
        english = next((d["value"] for d in designations if d.get("language") == "en"), None)
        concepts[c["code"]] = Concept(url, c["code"], c["display"], english)
        labels = [c["display"]] + [d["value"] for d in designations if d.get("language") != "en"]
        for label in labels:
            exact.setdefault(_exact_key(label), c["code"])
            key = _loose_key(label)
            if key:
                loose.setdefault(key, set()).add(c["code"])
    unambiguous = {k: next(iter(v)) for k, v in loose.items() if len(v) == 1}
    return _CodeSystem(res, concepts, exact, unambiguous)


def _build_conceptmap(res: dict[str, Any]) -> _ConceptMap:
    forward: dict[str, list[Target]] = {}
    reverse: dict[str, list[Target]] = {}
    group = res["group"][0]
    source, target = group["source"], group["target"]
    for element in group["element"]:
        for t in element.get("target", []):
            if "code" not in t:
                continue
            forward.setdefault(element["code"], []).append(Target(target, t["code"], t.get("display"), t["equivalence"]))
            reverse.setdefault(t["code"], []).append(Target(source, element["code"], element.get("display"), t["equivalence"]))
    return _ConceptMap(res, source, target, forward, reverse)


@cache
def _load() -> tuple[dict[str, _CodeSystem], dict[str, _ConceptMap], list[dict[str, Any]]]:
    with _lock:
        codesystems: dict[str, _CodeSystem] = {}
        conceptmaps: dict[str, _ConceptMap] = {}
        everything: list[dict[str, Any]] = []
        for path in sorted(CONTENT_DIR.glob("*.json")):
            res = json.loads(path.read_text(encoding="utf-8"))
            everything.append(res)
            if res["resourceType"] == "CodeSystem":
                codesystems[res["url"]] = _build_codesystem(res)
            elif res["resourceType"] == "ConceptMap":
                conceptmaps[res["url"]] = _build_conceptmap(res)
        return codesystems, conceptmaps, everything


def resources() -> list[dict[str, Any]]:
    """Every CodeSystem, ValueSet and ConceptMap resource, as loaded (do not mutate)."""
    return list(_load()[2])


def codesystem(url: str) -> dict[str, Any] | None:
    """The CodeSystem resource with this canonical URL, or None."""
    cs = _load()[0].get(url)
    return cs.resource if cs else None


def is_complete(url: str) -> bool:
    """True when the CodeSystem lists every code (unknown codes are errors); False for fragments."""
    cs = _load()[0].get(url)
    return bool(cs and cs.resource.get("content") == "complete")


def lookup(codesystem_url: str, code: str | int) -> Concept | None:
    """The concept with this code, or None (also None for an unknown CodeSystem)."""
    cs = _load()[0].get(codesystem_url)
    if cs is None:
        return None
    return cs.concepts.get(str(code).strip())


def match_label(codesystem_url: str, label: str | int) -> Concept | None:
    """The concept whose display or designation matches a (messy) label; a bare code also matches."""
    cs = _load()[0].get(codesystem_url)
    if cs is None or label is None:
        return None
    text = str(label)
    code = cs.exact.get(_exact_key(text))
    if code is None:
        code = cs.loose.get(_loose_key(text))
    if code is None:
        code = next((c for c in (text.strip(), text.strip().upper()) if c in cs.concepts), None)
    return cs.concepts.get(code) if code is not None else None


def translate(conceptmap_url: str, code: str | int, *, reverse: bool = False) -> list[Target]:
    """Targets of a code in a ConceptMap (source -> target, or target -> source with ``reverse``)."""
    cm = _load()[1].get(conceptmap_url)
    if cm is None:
        return []
    table = cm.reverse if reverse else cm.forward
    return list(table.get(str(code), []))
