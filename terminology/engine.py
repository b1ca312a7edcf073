"""The terminology operations ($lookup, $validate-code, $expand, $translate, $subsumes), transport-free.

Inputs are plain Python values (the caller parses the HTTP query or ``Parameters`` body);
outputs are FHIR ``Parameters`` / ``ValueSet`` dicts. Errors are :class:`FhirError`:

- an unknown code system, value set or concept map, or an unknown code in ``$lookup`` and
  ``$subsumes``: **404 not-found** (what HAPI answers for ``$lookup``);
- a malformed request (no code, negative count, ...): 400 invalid;
- an expansion that cannot be done (unknown system inside a compose, content not present) or is
  too large to return unpaged (more than ``max_expansion_size`` codes without ``count``): 422.

``$validate-code`` never fails for a wrong code: it answers ``result: false`` with a ``message``.
A display that does not match is reported in ``message`` but keeps ``result: true`` (as the
FHIR validator treats it: a warning); the correct ``display`` is always returned.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from fhir_server.errors import FhirError

from .codesystem import CodeSystemProvider, DictCodeSystem
from .conceptmap import NON_MATCHES, source_of, target_of
from .parameters import param, parameters, property_value
from .store import TerminologyRegistry
from .valueset import ValueSetEvaluator

#: Largest expansion returned without ``count``; larger ones must be paged.
DEFAULT_MAX_EXPANSION = 10_000


def _codings(
    code: str | None, system: str | None, version: str | None, coding: dict | None, codeable_concept: dict | None
) -> list[tuple[str | None, str, str | None, str | None]]:
    """(system, code, version, display) to check, from whichever input form was used."""
    if codeable_concept is not None:
        out = [
            (c.get("system"), c["code"], c.get("version"), c.get("display")) for c in codeable_concept.get("coding", []) if c.get("code")
        ]
    elif coding is not None:
        out = [(coding.get("system"), coding["code"], coding.get("version"), coding.get("display"))] if coding.get("code") else []
    elif code:
        out = [(system, code, version, None)]
    else:
        out = []
    if not out:
        raise FhirError.of(400, "required", "A code, coding or codeableConcept is required")
    return out


class TerminologyEngine:
    def __init__(self, registry: TerminologyRegistry, max_expansion_size: int = DEFAULT_MAX_EXPANSION):
        self.registry = registry
        self.valuesets = ValueSetEvaluator(registry)
        self.max_expansion_size = max_expansion_size

    def code_system(self, system: str, version: str | None = None, resource: dict | None = None) -> CodeSystemProvider:
        """The provider for ``system`` (404 when unknown); ``resource`` serves a CodeSystem not in the registry."""
        if resource is not None and self.registry.code_system(resource.get("url", ""), resource.get("version")) is None:
            return DictCodeSystem(resource)
        cs = self.registry.code_system(system, version)
        if cs is None:
            suffix = f" version '{version}'" if version else ""
            raise FhirError.of(404, "not-found", f"Unknown CodeSystem '{system}'{suffix}")
        return cs

    # -- CodeSystem/$lookup ----------------------------------------------------------------

    def lookup(
        self, system: str, code: str, version: str | None = None, properties: Iterable[str] | None = None, code_system: dict | None = None
    ) -> dict:
        """``CodeSystem/$lookup``: name, version, display, designations and properties of a code.

        With no ``properties`` every property of the concept is returned (including ``parent``)
        except ``child``, which can be large and is returned only when asked for.
        """
        if not system or not code:
            raise FhirError.of(400, "required", "$lookup needs a system and a code")
        cs = self.code_system(system, version, code_system)
        concept = cs.concept(code)
        if concept is None:
            why = "" if cs.has_content() else " (its content is not present on this server)"
            raise FhirError.of(404, "not-found", f"Unable to find code '{code}' in CodeSystem '{system}'{why}")
        wanted = set(properties) if properties is not None else None
        out = [param("name", cs.name or cs.url, "String")]
        if cs.version:
            out.append(param("version", cs.version, "String"))
        if concept.display is not None:
            out.append(param("display", concept.display, "String"))
        for d in concept.designations:
            part = []
            if d.get("language"):
                part.append(param("language", d["language"], "Code"))
            if d.get("use"):
                part.append(param("use", d["use"], "Coding"))
            part.append(param("value", d.get("value", ""), "String"))
            out.append(param("designation", part=part))
        values: list[tuple[str, str, Any]] = []
        if not any(p.code == "parent" for p in concept.properties):
            values += [("parent", "Code", p) for p in cs.parents(concept.code)]
        values += [(p.code, p.type, p.value) for p in concept.properties]
        if wanted is not None and "child" in wanted:
            values += [("child", "Code", c) for c in cs.children(concept.code)]
        if concept.definition and (wanted is None or "definition" in wanted):
            values.append(("definition", "String", concept.definition))
        for prop, kind, value in values:
            if wanted is not None and prop not in wanted:
                continue
            kind, value = property_value(value, kind)
            out.append(param("property", part=[param("code", prop, "Code"), param("value", value, kind)]))
        return parameters(*out)

    # -- CodeSystem/$validate-code ---------------------------------------------------------

    def validate_code_cs(
        self,
        url: str,
        code: str | None = None,
        version: str | None = None,
        display: str | None = None,
        coding: dict | None = None,
        codeable_concept: dict | None = None,
        code_system: dict | None = None,
    ) -> dict:
        """``CodeSystem/$validate-code``: is the code (or any coding of the concept) in the code system?"""
        cs = self.code_system(url, version, code_system)
        if not cs.has_content():
            return parameters(
                param("result", False),
                param(
                    "message", f"The CodeSystem '{url}' has no content here (content = not-present): codes cannot be validated", "String"
                ),
            )
        fragment = " (the code system is a fragment: the code may still exist)" if getattr(cs, "content", None) == "fragment" else ""
        failures: list[str] = []
        for system, c, _, given_display in _codings(code, url, version, coding, codeable_concept):
            if system not in (None, url):
                failures.append(f"The coding's system '{system}' is not the code system '{url}'")
                continue
            concept = cs.concept(c)
            if concept is None:
                failures.append(f"Unknown code '{c}' in the CodeSystem '{url}'{fragment}")
                continue
            return self._valid(concept.display, display or given_display, c, url)
        return parameters(param("result", False), param("message", "; ".join(failures), "String"))

    # -- ValueSet/$validate-code -----------------------------------------------------------

    def validate_code_vs(
        self,
        url: str | None = None,
        code: str | None = None,
        system: str | None = None,
        display: str | None = None,
        coding: dict | None = None,
        codeable_concept: dict | None = None,
        value_set: dict | None = None,
        value_set_version: str | None = None,
        system_version: str | None = None,
    ) -> dict:
        """``ValueSet/$validate-code``: is the code (or any coding of the concept) in the value set?

        A ``code`` without ``system`` is accepted when the value set draws from a single code system.
        """
        vs = value_set or self.valuesets.resolve(url or "", value_set_version)
        vs_name = vs.get("url") or "(inline ValueSet)"
        failures: list[str] = []
        for sys_, c, _, given_display in _codings(code, system, system_version, coding, codeable_concept):
            if sys_ is None:
                systems = self.valuesets.systems(vs)
                if len(systems) != 1:
                    failures.append(f"The code '{c}' has no system and the value set '{vs_name}' draws from several")
                    continue
                sys_ = next(iter(systems))
            cs = self.registry.code_system(sys_)
            if cs is not None and cs.has_content() and cs.concept(c) is None:
                failures.append(f"Unknown code '{c}' in the CodeSystem '{sys_}'")
                continue
            if not self.valuesets.contains(vs, sys_, c):
                failures.append(f"The code '{c}' from system '{sys_}' is not in the value set '{vs_name}'")
                continue
            return self._valid(self.valuesets.display_for(vs, sys_, c), display or given_display, c, sys_)
        return parameters(param("result", False), param("message", "; ".join(failures), "String"))

    @staticmethod
    def _valid(correct: str | None, given: str | None, code: str, system: str) -> dict:
        message = None
        if given is not None and correct is not None and given.strip().casefold() != correct.casefold():
            message = param("message", f"The display '{given}' for code '{code}' in '{system}' should be '{correct}'", "String")
        display = param("display", correct, "String") if correct is not None else None
        return parameters(param("result", True), message, display)

    # -- ValueSet/$expand ------------------------------------------------------------------

    def expand(
        self,
        url: str | None = None,
        value_set: dict | None = None,
        version: str | None = None,
        filter: str | None = None,
        count: int | None = None,
        offset: int | None = None,
    ) -> dict:
        """``ValueSet/$expand`` of a stored (``url``) or given (``value_set``) value set.

        ``filter`` is a case-insensitive word-prefix match on displays (see ``text.py``); ``count``
        and ``offset`` page the result; ``expansion.total`` is always the full size.
        """
        if (count is not None and count < 0) or (offset is not None and offset < 0):
            raise FhirError.of(400, "invalid", "count and offset must not be negative")
        if value_set is None:
            if not url:
                raise FhirError.of(400, "required", "$expand needs a url or a valueSet")
            value_set = self.valuesets.resolve(url, version)
        entries = self.valuesets.entries(value_set, filter)
        total, offset = len(entries), offset or 0
        if count is None and total - offset > self.max_expansion_size:
            raise FhirError.of(
                422, "too-costly", f"The expansion has {total} codes, more than {self.max_expansion_size}: page it with count and offset"
            )
        used = []
        for system in sorted(self.valuesets.systems(value_set)):
            cs = self.registry.code_system(system)
            used.append(param("used-codesystem", f"{system}|{cs.version}" if cs and cs.version else system, "Uri"))
        echoed = [
            param("filter", filter, "String") if filter else None,
            param("offset", offset, "Integer"),
            param("count", count, "Integer") if count is not None else None,
        ]
        expansion: dict[str, Any] = {
            "identifier": f"urn:uuid:{uuid.uuid4()}",
            "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
            "total": total,
            "offset": offset,
        }
        expansion_params = [p for p in echoed if p] + used
        if expansion_params:
            expansion["parameter"] = expansion_params
        contains = [i.to_fhir() for i in entries.page(offset, count)]
        if contains:
            expansion["contains"] = contains
        out = {k: v for k, v in value_set.items() if k not in ("compose", "expansion", "text", "meta")}
        out.setdefault("resourceType", "ValueSet")
        out.setdefault("status", "active")
        out["expansion"] = expansion
        return out

    # -- search modifiers -----------------------------------------------------------------

    def value_set_codes(self, value_set: dict, limit: int) -> list[tuple[str | None, str]]:
        """The (system, code) pairs of ``value_set``'s expansion (token ``:in`` / ``:not-in``); 422
        when there are more than ``limit``."""
        entries = self.valuesets.entries(value_set)
        if len(entries) > limit:
            raise FhirError.of(422, "too-costly", f"The value set has {len(entries)} codes, more than {limit} a search can list")
        return [(item.system, item.code) for item in entries]

    def related_codes(self, system: str, code: str, *, descendants: bool, limit: int) -> list[str]:
        """``code`` with its descendants (``descendants``) or its ancestors in ``system``'s
        hierarchy (token ``:below`` / ``:above``); 404 for an unknown system, 422 when the system's
        content is not here or there are more than ``limit``. A code the system lacks is itself alone."""
        cs = self.code_system(system)
        if not cs.has_content():
            raise FhirError.of(422, "not-supported", f"The CodeSystem '{system}' has no content here: its hierarchy is unknown")
        found = [code]
        if cs.concept(code) is None:
            return found
        step = cs.children if descendants else cs.parents
        seen, todo = {code}, [code]
        while todo:
            for other in step(todo.pop()):
                if other not in seen:
                    seen.add(other)
                    found.append(other)
                    todo.append(other)
                    if len(found) > limit:
                        raise FhirError.of(
                            422,
                            "too-costly",
                            f"'{code}' has more than {limit} {'descendants' if descendants else 'ancestors'} in '{system}'",
                        )
        return found

    # -- ConceptMap/$translate -------------------------------------------------------------

    def translate(
        self,
        url: str | None = None,
        code: str | None = None,
        system: str | None = None,
        version: str | None = None,
        coding: dict | None = None,
        codeable_concept: dict | None = None,
        source: str | None = None,
        target: str | None = None,
        target_system: str | None = None,
        reverse: bool = False,
        conceptmap_version: str | None = None,
        concept_map: dict | None = None,
    ) -> dict:
        """``ConceptMap/$translate`` with one concept map (``url``) or every map matching ``source``/``target``.

        ``reverse`` reads the maps backwards (target code -> source codes); ``source`` and
        ``target`` then swap meaning as the specification says, and ``wider``/``narrower`` and
        ``subsumes``/``specializes`` are inverted so the equivalence reads from the given code.
        """
        if concept_map is not None:
            maps = [concept_map]
        elif url:
            cm = self.registry.concept_map(url, conceptmap_version)
            if cm is None:
                raise FhirError.of(404, "not-found", f"Unknown ConceptMap '{url}'")
            maps = [cm]
        else:
            from_side, to_side = (target_of, source_of) if reverse else (source_of, target_of)
            maps = [
                cm
                for cm in self.registry.concept_maps()
                if (source is None or from_side(cm) == source) and (target is None or to_side(cm) == target)
            ]
        matches = []
        for sys_, c, _, _ in _codings(code, system, version, coding, codeable_concept):
            for cm in maps:
                for m in self.registry.concept_map_index(cm).translate(sys_, c, reverse):
                    if target_system and m.system != target_system:
                        continue
                    part = [param("equivalence", m.equivalence, "Code")]
                    if m.code is not None:
                        concept = {k: v for k, v in (("system", m.system), ("code", m.code), ("display", m.display)) if v}
                        part.append(param("concept", concept, "Coding"))
                    part.append(param("source", cm["url"], "Uri"))
                    matches.append((m.equivalence, param("match", part=part)))
        result = any(eq not in NON_MATCHES for eq, _ in matches)
        message = (
            None
            if result
            else param("message", "No mapping found" if not matches else "Only unmatched or disjoint mappings found", "String")
        )
        return parameters(param("result", result), message, *(m for _, m in matches))

    # -- CodeSystem/$subsumes --------------------------------------------------------------

    def subsumes(self, system: str, code_a: str, code_b: str, version: str | None = None, code_system: dict | None = None) -> dict:
        """``CodeSystem/$subsumes``: equivalent | subsumes | subsumed-by | not-subsumed (A relative to B)."""
        if not system or not code_a or not code_b:
            raise FhirError.of(400, "required", "$subsumes needs a system, codeA and codeB")
        cs = self.code_system(system, version, code_system)
        concepts = []
        for code in (code_a, code_b):
            concept = cs.concept(code)
            if concept is None:
                raise FhirError.of(404, "not-found", f"Unable to find code '{code}' in CodeSystem '{system}'")
            concepts.append(concept.code)
        a, b = concepts
        if a == b:
            outcome = "equivalent"
        elif cs.subsumes(a, b):
            outcome = "subsumes"
        elif cs.subsumes(b, a):
            outcome = "subsumed-by"
        else:
            outcome = "not-subsumed"
        return parameters(param("outcome", outcome, "Code"))


@lru_cache(maxsize=1)
def default_engine() -> TerminologyEngine:
    """The process-wide engine over :meth:`TerminologyRegistry.load_default` (region index stays lazy)."""
    return TerminologyEngine(TerminologyRegistry.load_default())
