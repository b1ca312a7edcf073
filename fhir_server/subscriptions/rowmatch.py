"""Judging changed resources against subscription filters in memory, on their index rows.

The matcher used to run one search per filtered subscription and batch of changes: the cost of
a create grew with the number of subscriptions. For the criteria below, this module reaches the
same verdict as the search engine's SQL (``search/sql.py``) without the database: it parses the
filter with the search parser (``parse_query``), extracts from the version a change produced the
very index rows the write stored for the parameters involved (``extract.param_rows``), and
compares them as the SQL does (same normalisation, same cuts, same NULL rules):

* ``_id`` (also ``:not``);
* token parameters without a modifier, ``:not`` and ``:missing`` (``[system]|[code]``, ``|code``,
  ``system|``);
* string parameters without a modifier (starts with, normalised) and ``:exact``; ``:missing``;
* reference parameters with a relative or bare id (``Patient/1``, ``1``, ``Patient/1/_history/2``,
  an absolute URL under this server's base), a type modifier, ``:missing``.

Everything else (chains, ``_has``, dates, numbers, quantities, uris, composites, other modifiers,
other ``_`` parameters, anything the parser reports) returns None from :func:`compile_filter`,
and the matcher asks the search engine as before.

:class:`Index` files the filters of one resource type under keys taken from one of their tests
(a token's code, a string's normalised value or prefix, a reference's target id, an ``_id``), so
a change meets only the filters its own index rows could satisfy: the cost of judging a change
does not grow with the number of subscriptions. Identical filters are judged once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from fhir_server.errors import FhirError
from fhir_server.search.extract import param_rows
from fhir_server.search.parse import Criterion, TokenValue, parse_query
from fhir_server.search.sql import TOP
from fhir_server.search.values import cut, normalize_string, parse_reference

Row = dict[str, Any]
#: index rows of one resource by parameter code
Rows = dict[str, list[Row]]
#: a filter's identity: (resource type, its search parameters)
FilterKey = tuple[str, tuple[tuple[str, str], ...]]


@dataclass(frozen=True)
class Test:
    """One ANDed criterion: ``kind`` id/token/string/reference, ORed ``alts``."""

    kind: str
    param: str
    alts: tuple[Any, ...]
    #: None, "not", "missing" or "exact" (strings)
    modifier: str | None = None
    missing: bool | None = None

    def holds(self, res_id: str, rows: Rows) -> bool:
        if self.kind == "id":
            return (res_id in self.alts) != (self.modifier == "not")
        mine = [r for r in rows.get(self.param, ()) if r.get("param") == self.param]
        if self.modifier == "missing":
            return not mine if self.missing else bool(mine)
        found = any(_row_matches(self.kind, self.modifier, alt, r) for r in mine for alt in self.alts)
        return found != (self.modifier == "not")

    def keys(self) -> list[tuple[Any, ...]] | None:
        """The index keys under which a resource satisfying this test is always found; None when
        the test cannot be indexed (negations, ``:missing``, a token without a code)."""
        if self.modifier in ("not", "missing"):
            return None
        if self.kind == "id":
            return [("id", a) for a in self.alts]
        if self.kind == "token":
            if any(code is None for _, code in self.alts):
                return None
            return [("token", self.param, code) for _, code in self.alts]
        if self.kind == "string":
            tag = "s=" if self.modifier == "exact" else "s^"
            return [(tag, self.param, a[0]) for a in self.alts]
        return [("ref", self.param, a[0]) for a in self.alts]


def _row_matches(kind: str, modifier: str | None, alt: Any, row: Row) -> bool:
    if kind == "token":
        system, code = alt
        if code is not None and row.get("code") != code:
            return False
        if system == "":
            return row.get("system") is None
        return system is None or row.get("system") == system
    if kind == "string":
        value = row.get("value")
        if value is None:
            return False
        if modifier == "exact":
            return bool(value == alt[0] and row.get("exact") == alt[1])
        return bool(alt[0] <= value < alt[0] + TOP)
    rid, rtype, version = alt
    return (
        row.get("target_id") == rid
        and (rtype is None or row.get("target_type") == rtype)
        and (version is None or row.get("target_version") == version)
    )


@dataclass(frozen=True)
class Filter:
    key: FilterKey
    tests: tuple[Test, ...]

    @property
    def params(self) -> set[str]:
        return {t.param for t in self.tests if t.kind != "id"}

    def holds(self, res_id: str, rows: Rows) -> bool:
        return all(t.holds(res_id, rows) for t in self.tests)


def compile_filter(res_type: str, params: list[tuple[str, str]], base: str) -> Filter | None:
    """The filter as in-memory tests, or None when the search engine must judge it."""
    if not params or any(name.startswith("_") and name.partition(":")[0] != "_id" for name, _ in params):
        return None
    try:
        q = parse_query(res_type, params, strict=False)
    except FhirError:
        return None  # the search reports it (the matcher logs it); nothing is decided here
    if q.issues or q.cursor_raw is not None or len(q.criteria) != len(params):
        return None
    tests = []
    for c in q.criteria:
        t = _test(c, base)
        if t is None:
            return None
        tests.append(t)
    return Filter((res_type, tuple(params)), tuple(tests))


def _test(c: Criterion, base: str) -> Test | None:
    if c.has is not None or c.chain is not None:
        return None
    if c.code == "_id":
        if c.param is not None or c.modifier not in (None, "not"):
            return None
        ids = [v.code if isinstance(v, TokenValue) else v for v in c.values]
        return Test("id", "_id", tuple(i for i in ids if i is not None), c.modifier)
    if c.param is None or c.ptype not in ("token", "string", "reference") or c.param.xpath_usage == "phonetic":
        return None  # (phonetic: sound keys, not strings) the search judges it
    if c.modifier == "missing":
        return Test(c.ptype, c.code, (), "missing", bool(c.missing))
    if c.ptype == "token":
        if c.modifier not in (None, "not") or not all(isinstance(v, TokenValue) for v in c.values):
            return None
        alts = tuple((cut(v.system) if v.system else v.system, cut(v.code)) for v in c.values if isinstance(v, TokenValue))
        return Test("token", c.code, alts, c.modifier)
    if c.ptype == "string":
        if c.modifier not in (None, "exact") or not all(isinstance(v, str) for v in c.values):
            return None
        return Test("string", c.code, tuple((normalize_string(v), v) for v in c.values if isinstance(v, str)), c.modifier)
    type_mod = c.modifier if c.modifier and c.modifier[:1].isupper() else None
    if c.modifier is not None and type_mod is None:
        return None  # :identifier, :missing handled above, anything else: the search
    refs: list[tuple[Any, ...]] = []
    for v in c.values:
        ref = _reference(v, base, type_mod) if isinstance(v, str) else None
        if ref is None:
            return None
        if ref != ():
            refs.append(ref)
    return Test("reference", c.code, tuple(refs), None)


def _reference(ref: str, base: str, type_mod: str | None) -> tuple[Any, ...] | None:
    """As ``SqlBuilder._reference``: (id, type or None, version or None); () for a value no row
    matches; None for an absolute URL (the search compares ``url``)."""
    prefix = base.rstrip("/") + "/" if base else None
    if prefix and ref.startswith(prefix):
        ref = ref[len(prefix) :]
    rtype: str | None
    rid: str | None
    if "/" not in ref and ":" not in ref:
        rtype, rid, version, url = None, ref, None, None
    else:
        rtype, rid, version, url = parse_reference(ref)
    if url is not None:
        return None
    if rid is None or (rtype and type_mod and rtype != type_mod):
        return ()
    return (rid, rtype or type_mod, version or None)


@dataclass
class Index:
    """The in-memory filters of one resource type, filed under their tests' keys."""

    #: key -> filters that a resource having this key may satisfy
    by_key: dict[tuple[Any, ...], list[Filter]] = field(default_factory=dict)
    #: filters without an indexable test: judged against every change
    scan: list[Filter] = field(default_factory=list)
    #: the parameters whose rows the filters look at
    params: set[str] = field(default_factory=set)
    #: string parameters filed by prefix -> the prefix lengths in use
    prefixes: dict[str, set[int]] = field(default_factory=dict)
    _known: set[FilterKey] = field(default_factory=set)

    def add(self, f: Filter) -> None:
        if f.key in self._known:
            return
        self._known.add(f.key)
        self.params |= f.params
        for t in f.tests:
            keys = t.keys()
            if keys is None:
                continue
            for k in keys:
                self.by_key.setdefault(k, []).append(f)
                if k[0] == "s^":
                    self.prefixes.setdefault(k[1], set()).add(len(k[2]))
            return
        self.scan.append(f)

    def matching(self, res_id: str, resource: dict[str, Any]) -> list[Filter]:
        """The filters ``resource`` (the version a change produced) satisfies."""
        rows = param_rows(resource, self.params)
        seen: dict[FilterKey, Filter] = {f.key: f for f in self.scan}
        for k in _keys(res_id, rows, self.prefixes):
            for f in self.by_key.get(k, ()):
                seen.setdefault(f.key, f)
        return [f for f in seen.values() if f.holds(res_id, rows)]


def _keys(res_id: str, rows: Rows, prefixes: dict[str, set[int]]) -> Iterable[tuple[Any, ...]]:
    yield ("id", res_id)
    for code, found in rows.items():
        for r in found:
            if r.get("param") != code:
                continue
            if "target_id" in r:
                yield ("ref", code, r.get("target_id"))
            elif "value" in r and "exact" in r:
                value = r.get("value") or ""
                yield ("s=", code, value)
                for n in prefixes.get(code, ()):
                    if n <= len(value):
                        yield ("s^", code, value[:n])
            elif "code" in r:
                yield ("token", code, r.get("code"))
