"""Plain-Python evaluation of the FHIRPath shapes the simple walker in
``extract.py`` leaves to fhirpathpy: unions of paths (``A.b | A.c.d``), type
casts (``(A.b as T)``, ``A.b.as(T)``, optionally followed by a path) and
choice elements without a cast (``Observation.effective``).

fhirpathpy costs 50-300 µs per expression; these walkers a few µs. They must
give exactly what fhirpathpy gives (the index must not depend on which path
ran), including its quirks:

* a union drops the type of every value to ``""`` (``distinct`` makes new,
  untyped nodes); the converters then go by the shape of the value;
* ``as`` on more than one item raises (the parameter is then not indexed):
  the walker raises the same error;
* primitive extensions (``_given``, ``_effectiveDateTime``) add nodes, and a
  ``_x`` of a choice can hide the value: the walker raises :class:`Fallback`
  and fhirpathpy evaluates the expression instead.

``tests/search/test_fhirpath_walker.py`` compares both on many shapes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fhirpathpy.engine.nodes import TypeInfo
from fhirpathpy.models import models

R4 = models["r4"]
_PATH2TYPE: dict[str, str] = R4["path2Type"]
_ELSEWHERE: dict[str, str] = R4["pathsDefinedElsewhere"]
_CHOICE: dict[str, list[str]] = R4["choiceTypePaths"]
_BACKBONE = frozenset(k.rsplit(".", 1)[0] for k in _PATH2TYPE)

Values = list[tuple[str, Any]]

_NAME = r"[a-z][A-Za-z]*"
_PATH = rf"((?:\.{_NAME})+)"
_TAIL = rf"((?:\.{_NAME})*)"
_BRANCH_PLAIN = re.compile(rf"^([A-Z][A-Za-z]+){_PATH}$")
_BRANCH_CAST_OP = re.compile(rf"^\(([A-Z][A-Za-z]+){_PATH} as ([A-Za-z]+)\){_TAIL}$")
_BRANCH_CAST_FN = re.compile(rf"^([A-Z][A-Za-z]+){_PATH}\.as\(([A-Za-z]+)\){_TAIL}$")


class Fallback(Exception):
    """This resource has a shape where only fhirpathpy gives fhirpathpy's answer."""


@dataclass(frozen=True)
class _Step:
    name: str
    #: the FHIR type of the values (None for a choice: it depends on the value's key)
    type: str | None
    #: choice element: (json key, type) for each allowed type, in fhirpathpy's order
    choices: tuple[tuple[str, str], ...] = ()
    primitive: bool = False


def _label(fhir_type: str) -> str:
    return fhir_type[7:].lower() if fhir_type.startswith("System.") else fhir_type


def _is_primitive(fhir_type: str) -> bool:
    return fhir_type[:1].islower() or fhir_type.startswith("System.")


def _steps(start: str, names: list[str]) -> list[_Step] | None:
    """The steps of a dotted path below type/element ``start``; None if not walkable here."""
    key, out = start, []
    for i, name in enumerate(names):
        path = _ELSEWHERE.get(f"{key}.{name}", f"{key}.{name}")
        if path in _CHOICE:
            if i != len(names) - 1:
                return None  # the next step would depend on the value's type
            choices = tuple((name + t[0].upper() + t[1:], _PATH2TYPE.get(path + t[0].upper() + t[1:], "")) for t in _CHOICE[path])
            if any(not t or t.startswith("System.") for _, t in choices):
                return None
            out.append(_Step(name, None, choices))
            continue
        t = _PATH2TYPE.get(path) or ("BackboneElement" if path in _BACKBONE else None)
        if t is None or t in ("Resource", "Extension") or name == "extension":
            return None
        out.append(_Step(name, t, primitive=_is_primitive(t)))
        key = path if t in ("BackboneElement", "Element") else t
    return out


def _walk(nodes: list[tuple[str, Any]], steps: list[_Step]) -> list[tuple[str, Any]]:
    """Follow ``steps`` from ``(type, value)`` nodes like fhirpathpy's member access."""
    for step in steps:
        nxt: list[tuple[str, Any]] = []
        for _, node in nodes:
            if not isinstance(node, dict):
                continue
            if step.choices:
                for key, t in step.choices:
                    if "_" + key in node:
                        raise Fallback(key)
                    v = node.get(key)
                    if v is not None:
                        if isinstance(v, list):  # not valid FHIR; fhirpathpy walks into it
                            raise Fallback(key)
                        nxt.append((t, v))
                        break
                continue
            if step.primitive and "_" + step.name in node:
                raise Fallback(step.name)
            v = node.get(step.name)
            if v is None:
                continue
            if isinstance(v, list):
                if any(x is None for x in v):
                    raise Fallback(step.name)
                nxt.extend((step.type, x) for x in v)  # type: ignore[misc]
            else:
                nxt.append((step.type, v))  # type: ignore[arg-type]
        nodes = nxt
        if not nodes:
            break
    return nodes


def _branch(expression: str, res_type: str) -> Callable[[dict], list[tuple[str, Any]]] | None:
    m = _BRANCH_PLAIN.match(expression)
    if m:
        if m.group(1) != res_type:
            return None
        steps = _steps(res_type, m.group(2)[1:].split("."))
        if steps is None:
            return None
        return lambda resource: _walk([(res_type, resource)], steps)
    m = _BRANCH_CAST_OP.match(expression) or _BRANCH_CAST_FN.match(expression)
    if not m or m.group(1) != res_type:
        return None
    _, dotted, as_type, tail = m.groups()
    head = _steps(res_type, dotted[1:].split("."))
    if head is None:
        return None
    last = head[-1]
    possible = [t for _, t in last.choices] if last.choices else [last.type]
    # is_type reads the type hierarchy from it, as fhirpathpy's own ``as`` does
    TypeInfo.model = R4  # type: ignore[assignment]  # fhirpathpy declares ``model = None`` without a type
    keep = frozenset(t for t in possible if t and TypeInfo.is_type(t, as_type))
    rest: list[_Step] = []
    if tail:
        if len(keep) != 1:
            return None
        found = _steps(next(iter(keep)), tail[1:].split("."))
        if found is None:
            return None
        rest = found

    def cast(resource: dict) -> list[tuple[str, Any]]:
        items = _walk([(res_type, resource)], head)
        if len(items) > 1:
            raise ValueError(f"Expected singleton on left side of 'as', got {len(items)} items")
        items = [i for i in items if i[0] in keep]
        return _walk(items, rest) if rest and items else items

    return cast


def _split_union(expression: str) -> list[str] | None:
    """Top-level ``|`` branches; None when parentheses other than a cast's are involved."""
    parts = [p.strip() for p in expression.split(" | ")]
    return parts if all(p.count("(") == p.count(")") <= 1 for p in parts) else None


def compile_walker(res_type: str, expression: str) -> Callable[[dict], Values] | None:
    """A plain-Python evaluator of ``expression`` on ``res_type``, or None if it is not one of our shapes."""
    parts = _split_union(expression)
    if not parts:
        return None
    branches = [_branch(p, res_type) for p in parts]
    if any(b is None for b in branches):
        return None
    if len(branches) == 1:
        (one,) = branches

        def single(resource: dict) -> Values:
            if resource.get("resourceType") != res_type:
                return []
            return [(_label(t), v) for t, v in one(resource)]  # type: ignore[misc]

        return single

    def union(resource: dict) -> Values:
        if resource.get("resourceType") != res_type:
            return []
        # fhirpathpy's union drops duplicates and types; duplicates give duplicate rows,
        # which extract_index drops, so only the types matter here
        return [("", v) for b in branches for _, v in b(resource)]  # type: ignore[misc]

    return union
