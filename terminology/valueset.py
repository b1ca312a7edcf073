"""ValueSet semantics: what a compose definition contains, listed (expansion) or tested (membership).

Expansion keeps the common single-include case lazy: ``ValueSet/$expand`` over every village
with ``count=20`` pages the region index instead of building 83,762 entries. Membership never
expands: it asks each include's code system whether the code exists and passes the filters.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from fhir_server.errors import FhirError

from . import text
from .codesystem import CodeSystemProvider, ListSelection, Selection
from .store import TerminologyRegistry, split_canonical

#: Nested ``include.valueSet`` references deeper than this are treated as a cycle.
MAX_DEPTH = 8


@dataclass(frozen=True, slots=True)
class Item:
    """One expansion entry."""

    system: str | None
    version: str | None
    code: str
    display: str | None

    def to_fhir(self) -> dict:
        out = {"system": self.system, "code": self.code}
        if self.version:
            out["version"] = self.version
        if self.display is not None:
            out["display"] = self.display
        return {k: v for k, v in out.items() if v is not None}


class Part:
    """The entries one include contributes: a code system selection tagged with its system/version."""

    def __init__(self, system: str | None, version: str | None, selection: Selection):
        self.system, self.version, self.selection = system, version, selection

    def __len__(self) -> int:
        return len(self.selection)

    def page(self, offset: int, count: int | None) -> list[Item]:
        return [Item(self.system, self.version, c, d) for c, d in self.selection.page(offset, count)]

    def __iter__(self) -> Iterator[Item]:
        return iter(self.page(0, None))


class ItemList:
    def __init__(self, items: list[Item]):
        self._items = items

    def __len__(self) -> int:
        return len(self._items)

    def page(self, offset: int, count: int | None) -> list[Item]:
        return self._items[offset : None if count is None else offset + count]

    def __iter__(self) -> Iterator[Item]:
        return iter(self._items)


class ValueSetEvaluator:
    def __init__(self, registry: TerminologyRegistry):
        self.registry = registry

    def resolve(self, canonical: str, version: str | None = None) -> dict:
        vs = self.registry.value_set(canonical, version)
        if vs is None:
            raise FhirError.of(404, "not-found", f"Unknown ValueSet '{canonical}'" + (f" version '{version}'" if version else ""))
        return vs

    def _code_system(self, system: str, version: str | None) -> CodeSystemProvider:
        cs = self.registry.code_system(system, version)
        if cs is None:
            raise FhirError.of(422, "not-found", f"Unknown CodeSystem '{system}'" + (f" version '{version}'" if version else ""))
        return cs

    # -- expansion -------------------------------------------------------------------------

    def entries(self, vs: dict, filter_text: str | None = None, depth: int = 0) -> Part | ItemList:
        """Everything ``vs`` contains (optionally text-filtered), in definition order, deduplicated."""
        if depth > MAX_DEPTH:
            raise FhirError.of(422, "processing", "ValueSet includes nest too deeply (a cycle?)")
        needles = text.terms(filter_text)
        compose = vs.get("compose")
        if not compose:
            if "expansion" in vs:
                return ItemList(
                    [
                        i
                        for i in _flatten(vs["expansion"].get("contains", []))
                        if not needles or text.matches(needles, text.normalize(i.display or ""))
                    ]
                )
            raise FhirError.of(422, "processing", f"ValueSet '{vs.get('url')}' has neither compose nor expansion")
        includes, excludes = compose.get("include", []), compose.get("exclude", [])
        parts = [self._include(inc, needles, filter_text, depth) for inc in includes]
        if len(parts) == 1 and not excludes:
            return parts[0]
        seen: set[tuple[str | None, str]] = set()
        out: list[Item] = []
        for part in parts:
            for item in part:
                key = (item.system, item.code)
                if key in seen or any(self._in_include(ex, item.system, item.code, depth) for ex in excludes):
                    continue
                seen.add(key)
                out.append(item)
        return ItemList(out)

    def _include(self, inc: dict, needles: list[str], filter_text: str | None, depth: int) -> Part | ItemList:
        system, version = inc.get("system"), inc.get("version")
        refs = inc.get("valueSet", [])
        if not system:
            if not refs:
                raise FhirError.of(422, "invalid", "A ValueSet include needs a system or a valueSet")
            first, others = refs[0], refs[1:]
            items = self.entries(self.resolve(first), filter_text, depth + 1)
            return ItemList([i for i in items if all(self._contains_ref(r, i.system, i.code, depth) for r in others)])
        cs = self.registry.code_system(system, version)
        if "concept" in inc:
            listed = []
            for c in inc["concept"]:
                display = c.get("display") or (cs.display(c["code"]) if cs else None)
                if needles and not text.matches(needles, text.normalize(display or "")):
                    continue
                listed.append((c["code"], display))
            selection: Selection = ListSelection(listed)
        else:
            if cs is None:
                cs = self._code_system(system, version)
            if not cs.has_content():
                raise FhirError.of(422, "not-supported", f"CodeSystem '{system}' has no content to expand")
            selection = cs.select(inc.get("filter", []), needles)
        version = version or (cs.version if cs else None)
        part = Part(system, version, selection)
        if refs:
            return ItemList([i for i in part if all(self._contains_ref(r, system, i.code, depth) for r in refs)])
        return part

    # -- membership ------------------------------------------------------------------------

    def contains(self, vs: dict, system: str | None, code: str, depth: int = 0) -> bool:
        if depth > MAX_DEPTH:
            raise FhirError.of(422, "processing", "ValueSet includes nest too deeply (a cycle?)")
        compose = vs.get("compose")
        if not compose:
            return any(
                i.code == code and (system is None or i.system == system) for i in _flatten(vs.get("expansion", {}).get("contains", []))
            )
        if not any(self._in_include(inc, system, code, depth) for inc in compose.get("include", [])):
            return False
        return not any(self._in_include(ex, system, code, depth) for ex in compose.get("exclude", []))

    def _contains_ref(self, ref: str, system: str | None, code: str, depth: int) -> bool:
        url, version = split_canonical(ref)
        return self.contains(self.resolve(url, version), system, code, depth + 1)

    def _in_include(self, inc: dict, system: str | None, code: str, depth: int) -> bool:
        inc_system = inc.get("system")
        if inc_system:
            if system is not None and system != inc_system:
                return False
            cs = self.registry.code_system(inc_system, inc.get("version"))
            if "concept" in inc:
                if cs is not None and not cs.case_sensitive:
                    found = any(c["code"].casefold() == code.casefold() for c in inc["concept"])
                else:
                    found = any(c["code"] == code for c in inc["concept"])
                if not found:
                    return False
            elif cs is None or cs.concept(code) is None or not cs.matches(code, inc.get("filter", [])):
                return False
        return all(self._contains_ref(r, system, code, depth) for r in inc.get("valueSet", []))

    def systems(self, vs: dict, depth: int = 0) -> set[str]:
        """The code systems a value set draws from (to infer a missing system in $validate-code)."""
        out: set[str] = set()
        if depth > MAX_DEPTH:
            return out
        compose = vs.get("compose")
        if not compose:
            return {i.system for i in _flatten(vs.get("expansion", {}).get("contains", [])) if i.system}
        for inc in compose.get("include", []):
            if inc.get("system"):
                out.add(inc["system"])
            else:
                for ref in inc.get("valueSet", []):
                    url, version = split_canonical(ref)
                    out |= self.systems(self.resolve(url, version), depth + 1)
        return out

    def display_for(self, vs: dict, system: str | None, code: str) -> str | None:
        """The display a value set gives a code: its code system's, else the include's own."""
        cs = self.registry.code_system(system) if system else None
        if cs is not None and cs.has_content():
            c = cs.concept(code)
            if c is not None:
                return c.display
        for inc in (vs.get("compose") or {}).get("include", []):
            if inc.get("system") == system:
                for c in inc.get("concept", []):
                    if c["code"] == code and c.get("display"):
                        return c["display"]
        for i in _flatten((vs.get("expansion") or {}).get("contains", [])):
            if i.code == code and i.system == system:
                return i.display
        return None


def _flatten(contains: list[dict]) -> Iterator[Item]:
    for c in contains:
        if "code" in c and not c.get("abstract"):
            yield Item(c.get("system"), c.get("version"), c["code"], c.get("display"))
        yield from _flatten(c.get("contains", []))
