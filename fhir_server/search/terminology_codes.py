"""Token search modifiers answered by the terminology (R4 search.html#token).

``:in`` and ``:not-in`` name a value set (its canonical URL, ``url|version``, or ``ValueSet/[id]``
of a stored one): the resource's coded value is, or is not, one of the value set's codes.
``:below`` and ``:above`` name a code (``system|code``): it, or one of its descendants (ancestors)
in the code system's hierarchy. Each such criterion is rewritten into the plain token criterion of
those codes (``:not-in`` into ``:not``), so the SQL (``SqlBuilder``'s code lists per system), the
subscription matcher and every other reader of criteria see nothing new.

The codes come from the database's terminology engine (storage/stored_terminology.py): the
packaged content and what clients stored, whichever worker stored it. A value set clients stored is
read from the database itself (``stored_value_set``), so that a transaction sees the one it wrote.
Value sets too large to list (more than ``MAX_CODES``), unknown ones, and code systems whose
content is not on this server are 400 OperationOutcomes naming the parameter: an unknown value set
is never read as "no codes", which ``:not-in`` would turn into "every resource". A stored value
set selects resources by another resource's content, as a chain does: a caller who may not search
ValueSets gets 403 (search/scope_filter.py); the packaged ones are the server's own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from fhir_server.errors import FhirError, error
from terminology.engine import TerminologyEngine

from .parameters import TERMINOLOGY_MODIFIERS as MODIFIERS
from .parse import Criterion, TokenValue

#: codes one criterion may stand for (a code list per system in the SQL)
MAX_CODES = 1000

#: a stored ValueSet by canonical URL (and version) or by ``ValueSet/[id]``, or None
StoredValueSet = Callable[[str], dict | None]


def expand_codes(criteria: list[Criterion], stored_value_set: StoredValueSet, terminology: Callable[[], TerminologyEngine]) -> None:
    """Rewrite every ``:in``/``:not-in``/``:below``/``:above`` criterion (chains and ``_has``
    included) into the token criterion of its codes; ``stored_value_set`` is called only for a
    value set clients stored, ``terminology`` (the database's engine) only when there is such a
    criterion."""
    engine: TerminologyEngine | None = None
    for c in _walk(criteria):
        if c.ptype != "token" or c.modifier not in MODIFIERS:
            continue
        name = f"{c.code}:{c.modifier}"
        pairs: dict[tuple[str | None, str], None] = {}
        if engine is None:
            engine = terminology()
        for value in c.values:
            try:
                found = _codes(engine, c.modifier, str(value), stored_value_set)
            except FhirError as exc:
                if exc.status == 403:  # a stored value set the caller may not search
                    raise
                raise FhirError(400, [error(exc.issues[0].code, f"Search parameter '{name}': {exc.issues[0].diagnostics}", name)]) from None
            pairs.update(dict.fromkeys(found))
        if len(pairs) > MAX_CODES:
            raise FhirError(
                400, [error("too-costly", f"Search parameter '{name}' stands for {len(pairs)} codes; at most {MAX_CODES}", name)]
            )
        c.values = [TokenValue(system, code) for system, code in pairs]
        c.modifier = "not" if c.modifier == "not-in" else None


def _walk(criteria: list[Criterion]) -> Iterator[Criterion]:
    for c in criteria:
        yield c
        for inner in (c.chain, c.has):
            if inner is not None:
                yield from _walk([inner])


def _codes(engine: TerminologyEngine, modifier: str, value: str, stored_value_set: StoredValueSet) -> list[tuple[str | None, str]]:
    if modifier in ("in", "not-in"):
        url, _, version = value.partition("|")
        # the server's own from the engine; a client's from the database (the source of truth,
        # current whichever worker stored it), with the caller's scopes
        packaged = engine.registry.is_packaged_value_set(url)
        value_set = engine.registry.value_set(url, version or None) if packaged else stored_value_set(value)
        if value_set is None:
            raise FhirError.of(404, "not-found", f"unknown ValueSet '{value}'")
        return engine.value_set_codes(value_set, MAX_CODES)
    system, bar, code = value.partition("|")
    if not bar or not system or not code:
        raise FhirError.of(400, "invalid", f"'{value}' is not a system|code pair (the hierarchy is the code system's)")
    return [(system, c) for c in engine.related_codes(system, code, descendants=modifier == "below", limit=MAX_CODES)]
