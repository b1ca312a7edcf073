"""SQL for search criteria: the same SQLAlchemy Core on SQLite and PostgreSQL.

Each criterion becomes ``r.pk IN (SELECT resource_pk FROM idx_x WHERE param = :p AND ...)``
(``NOT IN`` for ``:not``, ``:missing=true`` and ``ne``), which both planners
drive from the ``(param, value, ..., resource_pk)`` B-tree indexes. Chains join
``idx_reference`` to the target ``resources`` row and recurse; ``_has`` selects
``target_id`` values from the referring resources' reference rows.
"""

from __future__ import annotations

import time
from decimal import Decimal

import sqlalchemy as sa

from ..storage.index_tables import (
    idx_composite,
    idx_date,
    idx_number,
    idx_quantity,
    idx_reference,
    idx_string,
    idx_token,
    idx_uri,
)
from ..storage.tables import resources
from .parse import CompositeValue, Criterion, DateValue, OfTypeValue, QuantityValue, TokenValue
from .extract import leaf_type
from .registry import is_single_valued, params_for
from .values import MAX_US, cut, normalize_string, parse_reference

TABLES = {
    "token": idx_token,
    "string": idx_string,
    "date": idx_date,
    "reference": idx_reference,
    "number": idx_number,
    "quantity": idx_quantity,
    "uri": idx_uri,
    "composite": idx_composite,
}
TOP = "\U0010ffff"  # sorts after every other character (bytewise, UTF-8)
#: widest range of a date/dateTime/instant value: a partial year (leap)
YEAR_SPAN = 366 * 86_400_000_000
RANGE_TYPES = ("date", "number", "quantity")


def _escape_like(s: str) -> str:
    return s.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# ----------------------------------------------------------------------------- value predicates

def date_predicate(lo: sa.ColumnElement, hi: sa.ColumnElement, v: DateValue,
                   span: int | None = None) -> sa.ColumnElement:
    """Spec range semantics: target [lo, hi] vs search [v.lo, v.hi] (both inclusive).

    ``span`` is an upper bound of ``hi - lo`` for the parameter (a year for
    date/dateTime/instant elements, None for Periods). It adds redundant
    bounds on ``lo`` so a single index range scan on ``(param, lo)`` serves
    ``ge``/``gt`` too, and ``ge X & lt Y`` becomes one narrow range.
    """
    contained = sa.and_(lo >= v.lo, hi <= v.hi)
    p = v.prefix
    if p == "eq":
        return sa.and_(contained, lo <= v.hi)
    if p == "ne":
        return sa.or_(lo < v.lo, hi > v.hi)
    if p == "gt":
        return sa.and_(hi > v.hi, lo > v.hi - span) if span else hi > v.hi
    if p == "lt":
        return lo < v.lo
    if p == "ge":
        # hi > v.hi or contained  <=>  hi > v.hi or lo >= v.lo (as lo <= hi); either way hi >= v.lo
        cond = sa.or_(hi > v.hi, contained)
        return sa.and_(cond, lo >= v.lo - span) if span else sa.and_(cond, hi >= v.lo)
    if p == "le":
        return sa.and_(sa.or_(lo < v.lo, contained), lo <= v.hi)
    if p == "sa":
        return lo > v.hi
    if p == "eb":
        return sa.and_(hi < v.lo, lo < v.lo)
    # ap: overlap with the search range widened by 10% of its distance from now (min. 1 day)
    now = int(time.time() * 1_000_000)
    slack = max(abs(now - v.lo) // 10, 86_400_000_000)
    return sa.and_(lo <= min(v.hi + slack, MAX_US), hi >= v.lo - slack)


def number_predicate(col: sa.ColumnElement, prefix: str, value: Decimal, lo: float, hi: float) -> sa.ColumnElement:
    """Number/quantity: ``eq`` matches the implicit precision range of the search value."""
    v = float(value)
    if prefix == "eq":
        return sa.and_(col >= lo, col < hi)
    if prefix == "ne":
        return sa.or_(col < lo, col >= hi)
    if prefix in ("gt", "sa"):
        return col > v
    if prefix in ("lt", "eb"):
        return col < v
    if prefix == "ge":
        return col >= v
    if prefix == "le":
        return col <= v
    delta = abs(v) * 0.1  # ap: within 10%
    return sa.and_(col >= v - delta, col <= v + delta)


def _token_value(t: sa.Table, v: TokenValue, code_col: str = "code", system_col: str = "system") -> sa.ColumnElement:
    code, system = t.c[code_col], t.c[system_col]
    conds = []
    if v.code is not None:
        conds.append(code == cut(v.code))
    if v.system == "":
        conds.append(system.is_(None))
    elif v.system is not None:
        conds.append(system == cut(v.system))
    return sa.and_(*conds)


# ----------------------------------------------------------------------------- criteria

class SqlBuilder:
    """Builds WHERE clauses for parsed criteria; ``base_url`` makes absolute references local."""

    def __init__(self, base_url: str | None = None) -> None:
        self.base_url = base_url.rstrip("/") + "/" if base_url else None
        self._n = 0

    def _alias(self, t: sa.Table) -> sa.Alias:
        self._n += 1
        return t.alias(f"{t.name}_{self._n}")

    def clauses(self, r: sa.FromClause, criteria: list[Criterion]) -> list[sa.ColumnElement]:
        """Clauses for AND-ed criteria.

        Range criteria (date/number/quantity, no modifier) on the same
        single-valued parameter share one subquery, so ``birthdate=ge1980&
        birthdate=lt1990`` is one index range scan instead of two large sets
        intersected. For multi-valued parameters each criterion stays
        separate, as the spec requires (different values may satisfy each).
        """
        out, groups = [], {}
        for c in criteria:
            if self._mergeable(c):
                groups.setdefault(c.code, []).append(c)
            else:
                out.append(self.clause(r, c))
        for code, group in groups.items():
            if len(group) == 1:
                out.append(self.clause(r, group[0]))
                continue
            t = self._alias(TABLES[group[0].ptype])
            conds = [sa.or_(*[self._value(t, c, v) for v in c.values]) for c in group]
            out.append(r.c.pk.in_(sa.select(t.c.resource_pk).where(t.c.param == code, *conds)))
        return out

    @staticmethod
    def _mergeable(c: Criterion) -> bool:
        return (c.ptype in RANGE_TYPES and c.param is not None and c.modifier is None and c.chain is None
                and len(c.res_types) == 1 and is_single_valued(c.res_types[0], c.param.expression))

    def clause(self, r: sa.FromClause, c: Criterion) -> sa.ColumnElement:
        """Boolean clause on the resources row ``r`` for criterion ``c``."""
        if c.has is not None:
            return self._has(r, c)
        if c.chain is not None:
            return self._chain(r, c)
        if c.param is None and c.modifier == "missing":
            return sa.false() if c.missing else sa.true()  # every resource has an id and lastUpdated
        if c.code == "_id":
            ids = [v.code if isinstance(v, TokenValue) else v for v in c.values]
            ids = [i for i in ids if i is not None]
            return r.c.res_id.not_in(ids) if c.modifier == "not" else r.c.res_id.in_(ids)
        if c.code == "_lastUpdated":
            return sa.or_(*[date_predicate(r.c.updated_us, r.c.updated_us, v) for v in c.values])
        t = self._alias(TABLES[c.ptype])
        base = [t.c.param == c.code]
        if c.modifier == "missing":
            sub = sa.select(t.c.resource_pk).where(*base)
            return r.c.pk.not_in(sub) if c.missing else r.c.pk.in_(sub)
        if c.ptype == "token" and c.modifier == "of-type":
            base = [t.c.param == c.code + ":of-type"]
        ors = [self._value(t, c, v) for v in c.values]
        sub = sa.select(t.c.resource_pk).where(*base, sa.or_(*ors))
        if c.modifier == "not":
            return r.c.pk.not_in(sub)
        return r.c.pk.in_(sub)

    def _value(self, t: sa.Alias, c: Criterion, v) -> sa.ColumnElement:
        pt, mod = c.ptype, c.modifier
        if pt == "token":
            if mod == "text":
                return sa.or_(t.c.text.like(_escape_like(v) + "%", escape="\\"),
                              t.c.text.like("% " + _escape_like(v) + "%", escape="\\"))
            if isinstance(v, OfTypeValue):
                return sa.and_(t.c.system == cut(f"{v.type_system}|{v.type_code}"), t.c.code == cut(v.value))
            return _token_value(t, v)
        if pt == "string":
            norm = normalize_string(v)
            if mod == "exact":
                return sa.and_(t.c.value == norm, t.c.exact == v)
            if mod == "contains":
                return t.c.value.like("%" + _escape_like(norm) + "%", escape="\\")
            return sa.and_(t.c.value >= norm, t.c.value < norm + TOP)
        if pt == "date":
            return date_predicate(t.c.lo, t.c.hi, v, _span(c))
        if pt == "number":
            return number_predicate(t.c.value, v.prefix, v.value, v.lo, v.hi)
        if pt == "quantity":
            return self._quantity(t, v)
        if pt == "uri":
            if mod == "below":
                return sa.and_(t.c.value >= cut(v), t.c.value < cut(v) + TOP)
            if mod == "above":
                return t.c.value.in_([cut(u) for u in _uri_prefixes(v)])
            return t.c.value == cut(v)
        if pt == "reference":
            return self._reference(t, c, v)
        if pt == "composite":
            return self._composite(t, v)
        raise AssertionError(pt)

    def _composite(self, t: sa.Alias, v: CompositeValue) -> sa.ColumnElement:
        conds = [_token_value(t, v.first, "c1_code", "c1_system")]
        s2 = v.second
        if v.second_type == "token":
            conds.append(_token_value(t, s2, "c2_code", "c2_system"))
        elif v.second_type == "quantity":
            conds.append(number_predicate(t.c.c2_value, s2.prefix, s2.value, s2.lo, s2.hi))
            if s2.system:
                conds.append(t.c.c2_system == s2.system)
            if s2.code:
                conds.append(t.c.c2_code == s2.code)
        elif v.second_type == "number":
            conds.append(number_predicate(t.c.c2_value, s2.prefix, s2.value, s2.lo, s2.hi))
        elif v.second_type == "date":
            conds.append(date_predicate(t.c.c2_lo, t.c.c2_hi, s2))
        else:
            norm = normalize_string(s2)
            conds.append(sa.and_(t.c.c2_text >= norm, t.c.c2_text < norm + TOP))
        return sa.and_(*conds)

    def _quantity(self, t: sa.Alias, v: QuantityValue) -> sa.ColumnElement:
        conds = [number_predicate(t.c.value, v.prefix, v.value, v.lo, v.hi)]
        if v.system:
            conds.append(t.c.system == v.system)
        if v.code:
            conds.append(sa.or_(t.c.code == v.code, t.c.unit == v.code) if not v.system else t.c.code == v.code)
        return sa.and_(*conds)

    def _reference(self, t: sa.Alias, c: Criterion, v) -> sa.ColumnElement:
        if c.modifier == "identifier":
            return _token_value(t, v, "id_value", "id_system")
        ref = v
        if self.base_url and ref.startswith(self.base_url):
            ref = ref[len(self.base_url):]
        if "/" not in ref and ":" not in ref:
            rtype, rid, version, url = None, ref, None, None  # a bare id
        else:
            rtype, rid, version, url = parse_reference(ref)
        if url is not None:
            return t.c.url == cut(url)
        if rid is None:
            return sa.false()
        conds = [t.c.target_id == rid]
        type_mod = c.modifier if c.modifier and c.modifier[:1].isupper() else None
        if rtype and type_mod and rtype != type_mod:
            return sa.false()
        if rtype or type_mod:
            conds.append(t.c.target_type == (rtype or type_mod))
        if version:
            conds.append(t.c.target_version == version)
        return sa.and_(*conds)

    def _chain(self, r: sa.FromClause, c: Criterion) -> sa.ColumnElement:
        ref = self._alias(idx_reference)
        target = resources.alias(f"chain_{self._n}")
        inner = self.clause(target, c.chain)
        sub = (
            sa.select(ref.c.resource_pk)
            .select_from(ref.join(target, sa.and_(target.c.res_type == ref.c.target_type,
                                                  target.c.res_id == ref.c.target_id)))
            .where(ref.c.param == c.code, target.c.res_type.in_(c.chain_types),
                   target.c.deleted == sa.false(), inner)
        )
        return r.c.pk.in_(sub)

    def _has(self, r: sa.FromClause, c: Criterion) -> sa.ColumnElement:
        ref = self._alias(idx_reference)
        src = resources.alias(f"has_{self._n}")
        inner = self.clause(src, c.has)
        sub = (
            sa.select(ref.c.target_id)
            .select_from(ref.join(src, src.c.pk == ref.c.resource_pk))
            .where(ref.c.param == c.has_param, src.c.res_type == c.has_type,
                   src.c.deleted == sa.false(), inner)
        )
        if len(c.res_types) == 1:
            sub = sub.where(ref.c.target_type == c.res_types[0])
        else:
            sub = sub.where(ref.c.target_type == r.c.res_type)
        return r.c.res_id.in_(sub)

    # ------------------------------------------------------------------------- sorting

    def sort_expr(self, r: sa.FromClause, code: str, descending: bool, res_types: tuple[str, ...]) -> sa.ColumnElement:
        """A scalar sort key: min value for ascending, max for descending (multi-valued params)."""
        if code == "_id":
            return r.c.res_id
        if code == "_lastUpdated":
            return r.c.updated_us
        p = params_for(res_types[0])[code]
        t = self._alias(TABLES[p.type])
        col = {
            "string": t.c.get("value"), "token": t.c.get("code"), "uri": t.c.get("value"),
            "number": t.c.get("value"), "quantity": t.c.get("value"),
            "reference": t.c.get("target_id"),
            "date": t.c.get("hi") if descending else t.c.get("lo"),
        }[p.type]
        agg = sa.func.max(col) if descending else sa.func.min(col)
        return (sa.select(agg).where(t.c.resource_pk == r.c.pk, t.c.param == code).scalar_subquery())


def _span(c: Criterion) -> int | None:
    if c.param is None or len(c.res_types) != 1:
        return None
    leaf = leaf_type(c.res_types[0], c.param.expression)
    return YEAR_SPAN if leaf in ("date", "dateTime", "instant") else None


def _uri_prefixes(v: str) -> list[str]:
    """``:above``: the value itself and every ``/``-delimited prefix of it."""
    out = [v]
    cut = v.rstrip("/")
    while "/" in cut:
        cut = cut.rsplit("/", 1)[0]
        if cut.endswith(":/") or cut.endswith(":"):
            break
        out.extend([cut, cut + "/"])
    return out
