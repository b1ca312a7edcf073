"""Code system providers: the engine's view of a code system, whatever backs it.

A provider answers "what is this code", "what are its parents/children" and
"which codes satisfy these ValueSet filters". :class:`DictCodeSystem` serves an
ordinary FHIR CodeSystem dict; ``regions.RegionCodeSystem`` serves the Kemendagri
regions from a compact index without ever building 90k concept dicts.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from fhir_server.errors import FhirError

from . import text

#: (code, display) as an expansion needs it.
Entry = tuple[str, "str | None"]


@dataclass(frozen=True, slots=True)
class PropertyValue:
    """One concept property: ``type`` is the ``value[x]`` suffix (Code, Coding, String, Integer, Boolean, ...)."""

    code: str
    type: str
    value: Any


@dataclass(slots=True)
class Concept:
    code: str
    display: str | None
    definition: str | None = None
    designations: list[dict] = field(default_factory=list)
    properties: list[PropertyValue] = field(default_factory=list)


class Selection(ABC):
    """The ordered result of applying filters to a code system; paged without materialising everything."""

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def page(self, offset: int, count: int | None) -> list[Entry]: ...

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.page(0, None))


class ListSelection(Selection):
    def __init__(self, entries: list[Entry]):
        self._entries = entries

    def __len__(self) -> int:
        return len(self._entries)

    def page(self, offset: int, count: int | None) -> list[Entry]:
        end = None if count is None else offset + count
        return self._entries[offset:end]


class CodeSystemProvider(ABC):
    """What the engine needs from a code system. Subclasses index their concepts once, up front or lazily."""

    url: str
    version: str | None
    name: str | None
    case_sensitive: bool = True
    #: property code -> value[x] suffix, from CodeSystem.property (plus parent/child).
    property_types: dict[str, str]

    @abstractmethod
    def resource(self) -> dict:
        """The CodeSystem as it should be stored and served by the REST API."""

    @abstractmethod
    def concept(self, code: str) -> Concept | None:
        """The concept for ``code`` (exact, or case-insensitive when the system is), or ``None``."""

    @abstractmethod
    def parents(self, code: str) -> list[str]: ...

    @abstractmethod
    def children(self, code: str) -> list[str]: ...

    @abstractmethod
    def select(self, filters: list[dict], needles: list[str]) -> Selection:
        """Codes satisfying every ValueSet include ``filters`` and the text ``needles``, in code-system order."""

    def has_content(self) -> bool:
        return True

    def display(self, code: str) -> str | None:
        c = self.concept(code)
        return c.display if c else None

    def subsumes(self, ancestor: str, code: str) -> bool:
        """True when ``ancestor`` is ``code`` or one of its transitive parents."""
        if ancestor == code:
            return True
        seen: set[str] = set()
        todo = list(self.parents(code))
        while todo:
            c = todo.pop()
            if c == ancestor:
                return True
            if c not in seen:
                seen.add(c)
                todo.extend(self.parents(c))
        return False

    def property_values(self, code: str, prop: str) -> list[Any]:
        if prop == "parent":
            return self.parents(code)
        if prop == "child":
            return self.children(code)
        c = self.concept(code)
        if c is None:
            return []
        return [p.value for p in c.properties if p.code == prop]

    def matches(self, code: str, filters: list[dict]) -> bool:
        """Whether an existing ``code`` satisfies every filter (membership test for $validate-code)."""
        return all(filter_predicate(self, f)(code) for f in filters)


def _as_text(value: Any) -> str:
    if isinstance(value, dict):  # Coding-valued property: compare its code
        return str(value.get("code"))
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def filter_predicate(cs: CodeSystemProvider, f: dict) -> Callable[[str], bool]:
    """A per-code test for one ValueSet ``compose.include.filter`` (FHIR R4 filter-operator codes)."""
    prop, op, value = f.get("property"), f.get("op"), f.get("value", "")
    if not prop or not op:
        raise FhirError.of(400, "invalid", "ValueSet filter needs a property and an op")
    is_code = prop in ("concept", "code")
    if op == "is-a":
        return lambda c: cs.subsumes(value, c)
    if op == "descendent-of":
        return lambda c: c != value and cs.subsumes(value, c)
    if op == "is-not-a":
        return lambda c: not cs.subsumes(value, c)
    if op == "generalizes":
        return lambda c: cs.subsumes(c, value)
    if op in ("in", "not-in"):
        wanted = {v.strip() for v in value.split(",")}
        inside: Callable[[str], bool] = (
            (lambda c: c in wanted) if is_code else (lambda c: any(_as_text(v) in wanted for v in cs.property_values(c, prop)))
        )
        return inside if op == "in" else (lambda c: not inside(c))
    if op == "regex":
        try:
            pattern = re.compile(value)
        except re.error as e:
            raise FhirError.of(400, "invalid", f"Invalid regex in ValueSet filter: {e}") from e
        if is_code:
            return lambda c: pattern.fullmatch(c) is not None
        return lambda c: any(pattern.fullmatch(_as_text(v)) for v in cs.property_values(c, prop))
    if op == "=":
        if is_code:
            return lambda c: c == value
        if prop == "display":
            return lambda c: cs.display(c) == value
        return lambda c: any(_as_text(v) == value for v in cs.property_values(c, prop))
    if op == "exists":
        want = value.lower() == "true"
        return lambda c: bool(cs.property_values(c, prop)) == want
    raise FhirError.of(422, "not-supported", f"ValueSet filter operator '{op}' is not supported")


class DictCodeSystem(CodeSystemProvider):
    """A provider over a FHIR CodeSystem dict: nested ``concept`` trees and ``parent``/``subsumedBy`` properties."""

    def __init__(self, resource: dict):
        self._resource = resource
        self.url = resource["url"]
        self.version = resource.get("version")
        self.name = resource.get("name")
        self.case_sensitive = resource.get("caseSensitive", True) is not False
        self.content = resource.get("content", "complete")
        self.property_types = {p["code"]: _PROPERTY_TYPES.get(p.get("type", "code"), "Code") for p in resource.get("property", [])}
        self.property_types.setdefault("parent", "Code")
        self.property_types.setdefault("child", "Code")
        self._concepts: dict[str, Concept] = {}
        self._order: list[str] = []
        self._parents: dict[str, list[str]] = {}
        self._children: dict[str, list[str]] = {}
        self._folded: dict[str, str] = {}
        self._normalized: dict[str, str] = {}
        self._index(resource.get("concept", []), None)

    def _index(self, concepts: Iterable[dict], parent: str | None) -> None:
        for c in concepts:
            code = c["code"]
            if code in self._concepts:  # listed again under a second parent: only the link is new
                if parent:
                    self._link(parent, code)
                self._index(c.get("concept", []), code)
                continue
            props = []
            for p in c.get("property", []):
                kind, val = next(((k[5:], v) for k, v in p.items() if k.startswith("value")), ("Code", None))
                props.append(PropertyValue(p["code"], kind, val))
            self._concepts[code] = Concept(
                code,
                c.get("display"),
                c.get("definition"),
                list(c.get("designation", [])),
                [p for p in props if p.code not in ("parent", "child")],
            )
            self._order.append(code)
            self._normalized[code] = text.normalize(c.get("display") or "")
            if not self.case_sensitive:
                self._folded.setdefault(code.casefold(), code)
            parents = [parent] if parent else []
            parents += [p.value for p in props if p.code in ("parent", "subsumedBy") and p.value not in parents]
            for p in parents:
                self._link(p, code)
            self._index(c.get("concept", []), code)

    def _link(self, parent: str, child: str) -> None:
        self._parents.setdefault(child, []).append(parent)
        self._children.setdefault(parent, []).append(child)

    def resource(self) -> dict:
        return self._resource

    def has_content(self) -> bool:
        return self.content != "not-present" and bool(self._concepts)

    def _canonical_code(self, code: str) -> str | None:
        if code in self._concepts:
            return code
        if not self.case_sensitive:
            return self._folded.get(code.casefold())
        return None

    def concept(self, code: str) -> Concept | None:
        canonical = self._canonical_code(code)
        return self._concepts[canonical] if canonical else None

    def parents(self, code: str) -> list[str]:
        return self._parents.get(self._canonical_code(code) or code, [])

    def children(self, code: str) -> list[str]:
        return self._children.get(self._canonical_code(code) or code, [])

    def select(self, filters: list[dict], needles: list[str]) -> Selection:
        preds = [filter_predicate(self, f) for f in filters]
        return ListSelection(
            [
                (code, self._concepts[code].display)
                for code in self._order
                if all(p(code) for p in preds) and (not needles or text.matches(needles, self._normalized[code]))
            ]
        )


#: CodeSystem.property.type -> value[x] suffix.
_PROPERTY_TYPES = {
    "code": "Code",
    "Coding": "Coding",
    "string": "String",
    "integer": "Integer",
    "boolean": "Boolean",
    "dateTime": "DateTime",
    "decimal": "Decimal",
}
