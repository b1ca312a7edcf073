"""SQL text for search criteria: one string for SQLite and PostgreSQL, named ``:vN`` parameters.

Each criterion becomes ``r.pk IN (SELECT resource_pk FROM idx_x WHERE param = :v1 AND ...)``
(``NOT IN`` for ``:not``, ``:missing=true`` and ``ne``), which both planners
drive from the ``(param, value, ..., resource_pk)`` B-tree indexes. Chains join
``idx_reference`` to the target ``resources`` row and recurse; ``_has`` selects
``target_id`` values from the referring resources' reference rows.

The SQL is built as plain strings, not SQLAlchemy expressions: building and
compiling a Core expression tree cost over a millisecond of Python per search,
several times the query itself. Every value is a bound parameter (never
spliced into the text); table aliases and column names come from this module
only. :func:`dbapi_sql` turns the ``:vN`` placeholders into the driver's style.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any, cast

from ..storage.placeholders import named
from .compartment import FOCAL
from .extract import leaf_type
from .hierarchy import HierarchyValue
from .near import LATITUDE, LONGITUDE, NearValue, box_and_scale
from .parameters import is_single_valued, params_for
from .parse import CompositeValue, Criterion, DateValue, NumberValue, OfTypeValue, QuantityValue, TokenValue
from .phonetic import lookup_keys, search_keys
from .values import MAX_US, cut, normalize_string, parse_reference

TABLES = {
    "token": "idx_token",
    "string": "idx_string",
    "date": "idx_date",
    "reference": "idx_reference",
    "number": "idx_number",
    "quantity": "idx_quantity",
    "uri": "idx_uri",
    "composite": "idx_composite",
}
#: the column a sort by a parameter of each type uses (dates: ``lo`` ascending, ``hi`` descending)
SORT_COLUMNS = {"string": "value", "token": "code", "uri": "value", "number": "value", "quantity": "value", "reference": "target_id"}
TOP = "\U0010ffff"  # sorts after every other character (bytewise, UTF-8)
#: widest range of a date/dateTime/instant value: a partial year (leap)
RANGE_TYPES = ("date", "number", "quantity")
TRUE, FALSE = "1=1", "1=0"


def dbapi_sql(sql: str, dialect: str) -> str:
    """``:vN`` placeholders as the driver wants them (storage/placeholders.py)."""
    return named(sql, dialect)


def _escape_like(s: str) -> str:
    return s.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def and_(parts: list[str]) -> str:
    return "(" + " AND ".join(parts) + ")" if parts else TRUE


def or_(parts: list[str]) -> str:
    return "(" + " OR ".join(parts) + ")" if parts else FALSE


class SqlBuilder:
    """Builds WHERE clauses for parsed criteria; collects their values in :attr:`params`.

    ``base_url`` makes absolute references under this server local.
    """

    def __init__(self, base_url: str | None = None, *, prefix: str = "v") -> None:
        self.base_url = base_url.rstrip("/") + "/" if base_url else None
        self.params: dict[str, Any] = {}
        self._n = 0
        #: of the placeholders' names (a clause embedded in another statement needs its own)
        self.prefix = prefix

    def p(self, value: Any) -> str:
        """A placeholder bound to ``value``."""
        name = f"{self.prefix}{len(self.params)}"
        self.params[name] = value
        return ":" + name

    def in_list(self, column: str, values: list[Any], *, negate: bool = False) -> str:
        if not values:
            return TRUE if negate else FALSE
        return f"{column} {'NOT IN' if negate else 'IN'} ({', '.join(self.p(v) for v in values)})"

    def _alias(self, table: str) -> str:
        self._n += 1
        return f"{table}_{self._n}"

    # ------------------------------------------------------------------------- value predicates

    def date_predicate(self, lo: str, hi: str, v: DateValue, span: str | None = None) -> str:
        """Spec range semantics: target [lo, hi] vs search [v.lo, v.hi] (both inclusive).

        ``span`` is an SQL expression bounding ``hi - lo`` for the parameter (None: no
        bound known). It adds redundant bounds on ``lo`` so a single index range scan on
        ``(param, lo)`` serves ``ge``/``gt`` too, and ``ge X & le Y`` becomes one range
        only as wide as the search plus the widest stored value.
        """
        p = self.p

        def contained() -> str:
            return f"{lo} >= {p(v.lo)} AND {hi} <= {p(v.hi)}"

        prefix = v.prefix
        if prefix == "eq":
            return f"({contained()} AND {lo} <= {p(v.hi)})"
        if prefix == "ne":
            return f"({lo} < {p(v.lo)} OR {hi} > {p(v.hi)})"
        if prefix == "gt":
            return f"({hi} > {p(v.hi)} AND {lo} > {p(v.hi)} - {span})" if span else f"{hi} > {p(v.hi)}"
        if prefix == "lt":
            return f"{lo} < {p(v.lo)}"
        if prefix == "ge":
            # hi > v.hi or contained  <=>  hi > v.hi or lo >= v.lo (as lo <= hi); either way hi >= v.lo
            cond = f"({hi} > {p(v.hi)} OR ({contained()}))"
            return f"({cond} AND {lo} >= {p(v.lo)} - {span})" if span else f"({cond} AND {hi} >= {p(v.lo)})"
        if prefix == "le":
            return f"(({lo} < {p(v.lo)} OR ({contained()})) AND {lo} <= {p(v.hi)})"
        if prefix == "sa":
            return f"{lo} > {p(v.hi)}"
        if prefix == "eb":
            return f"({hi} < {p(v.lo)} AND {lo} < {p(v.lo)})"
        # ap: overlap with the search range widened by 10% of its distance from now (min. 1 day)
        now = int(time.time() * 1_000_000)
        slack = max(abs(now - v.lo) // 10, 86_400_000_000)
        return f"({lo} <= {p(min(v.hi + slack, MAX_US))} AND {hi} >= {p(v.lo - slack)})"

    def number_predicate(self, col: str, prefix: str, value: Decimal, lo: float, hi: float) -> str:
        """Number/quantity: ``eq`` matches the implicit precision range of the search value."""
        p = self.p
        v = float(value)
        if prefix == "eq":
            return f"({col} >= {p(lo)} AND {col} < {p(hi)})"
        if prefix == "ne":
            return f"({col} < {p(lo)} OR {col} >= {p(hi)})"
        if prefix in ("gt", "sa"):
            return f"{col} > {p(v)}"
        if prefix in ("lt", "eb"):
            return f"{col} < {p(v)}"
        if prefix == "ge":
            return f"{col} >= {p(v)}"
        if prefix == "le":
            return f"{col} <= {p(v)}"
        delta = abs(v) * 0.1  # ap: within 10%
        return f"({col} >= {p(v - delta)} AND {col} <= {p(v + delta)})"

    def _span(self, c: Criterion) -> str | None:
        """The widest ``hi - lo`` stored for the criterion's parameter, read by the statement
        itself (one descent of ``ix_idx_date_param_span``; always in the statement's own
        snapshot, so never narrower than a stored value): the year-wide constant this replaced
        made ``birthdate=ge1980-05-01&birthdate=le1980-05-28`` scan thirteen months of entries
        for one month of matches. Only for date/dateTime/instant elements (a Period has no
        bound to speak of)."""
        if c.param is None or len(c.res_types) != 1:
            return None
        if leaf_type(c.res_types[0], c.param.expression) not in ("date", "dateTime", "instant"):
            return None
        return f"(SELECT COALESCE(MAX(span.hi - span.lo), 0) FROM idx_date span WHERE span.param = {self.p(c.code)})"

    def _token_value(self, t: str, v: TokenValue, code_col: str = "code", system_col: str = "system") -> str:
        conds = []
        if v.code is not None:
            conds.append(f"{t}.{code_col} = {self.p(cut(v.code))}")
        if v.system == "":
            conds.append(f"{t}.{system_col} IS NULL")
        elif v.system is not None:
            conds.append(f"{t}.{system_col} = {self.p(cut(v.system))}")
        return and_(conds)

    # ------------------------------------------------------------------------- criteria

    def clauses(self, r: str, criteria: list[Criterion]) -> list[str]:
        """Clauses for AND-ed criteria on the ``resources`` alias ``r``.

        Range criteria (date/number/quantity, no modifier) on the same
        single-valued parameter share one subquery, so ``birthdate=ge1980&
        birthdate=lt1990`` is one index range scan instead of two large sets
        intersected. For multi-valued parameters each criterion stays
        separate, as the spec requires (different values may satisfy each).
        """
        out: list[str] = []
        groups: dict[str, list[Criterion]] = {}
        for c in criteria:
            if self._mergeable(c):
                groups.setdefault(c.code, []).append(c)
            elif (keys := self._phonetic_keys(c)) is not None:
                out.extend(self._phonetic_key(r, c.code, key) for key in keys)
            else:
                out.append(self.clause(r, c))
        for code, group in groups.items():
            if len(group) == 1:
                out.append(self.clause(r, group[0]))
                continue
            table = TABLES[group[0].ptype]
            t = self._alias(table)
            head = f"SELECT {t}.resource_pk FROM {table} {t} WHERE {t}.param = {self.p(code)}"
            conds = [or_([self._value(t, c, v) for v in c.values]) for c in group]
            out.append(f"{r}.pk IN ({head} AND {' AND '.join(conds)})")
        return out

    @staticmethod
    def _mergeable(c: Criterion) -> bool:
        return (
            c.ptype in RANGE_TYPES
            and c.param is not None
            and c.modifier is None
            and c.chain is None
            and len(c.res_types) == 1
            and is_single_valued(c.res_types[0], c.param.expression)
        )

    def clause(self, r: str, c: Criterion) -> str:
        """Boolean clause on the resources alias ``r`` for criterion ``c``."""
        if c.has is not None:
            return self._has(r, c, c.has)
        if c.chain is not None:
            return self._chain(r, c, c.chain)
        if c.param is None and c.modifier == "missing":
            return FALSE if c.missing else TRUE  # every resource has an id and lastUpdated
        if c.code == "_id":
            ids = [v.code if isinstance(v, TokenValue) else v for v in c.values]
            return self.in_list(f"{r}.res_id", [i for i in ids if i is not None], negate=c.modifier == "not")
        if c.code == "_lastUpdated":
            dates = cast(list[DateValue], c.values)  # _lastUpdated is a date column: parse_date_value made each value
            return or_([self.date_predicate(f"{r}.updated_us", f"{r}.updated_us", v) for v in dates])
        if c.code == "_list" and c.param is None:
            return self._list(r, c)
        if c.ptype == "reference" and c.modifier in ("above", "below"):
            return self._hierarchy(r, c)
        if c.param is not None and c.param.xpath_usage == "phonetic":
            return self._phonetic(r, c)
        if c.ptype == "special":
            if c.modifier == "missing":  # a position is both coordinates (search/near.py)
                with_position = f"SELECT n.resource_pk FROM idx_number n WHERE n.param = {self.p(LATITUDE)}"
                return f"{r}.pk {'NOT IN' if c.missing else 'IN'} ({with_position})"
            return self._near(r, c)
        table = TABLES[c.ptype]
        t = self._alias(table)
        param = c.code + ":of-type" if c.ptype == "token" and c.modifier == "of-type" else c.code
        head = f"SELECT {t}.resource_pk FROM {table} {t} WHERE {t}.param = {self.p(param)}"
        if c.modifier == "missing":
            return f"{r}.pk {'NOT IN' if c.missing else 'IN'} ({head})"
        sub = f"{head} AND {self._token_list(t, c) or or_([self._value(t, c, v) for v in c.values])}"
        return f"{r}.pk {'NOT IN' if c.modifier == 'not' else 'IN'} ({sub})"

    def _hierarchy(self, r: str, c: Criterion) -> str:
        """References to each value's resource or to any resource below (``:below``) or above it in
        its type's ``partOf`` hierarchy (search/hierarchy.py): a recursive walk over row keys (the
        ids' types and collations differ between tables), UNION ending cycles."""
        t, p = self._alias("idx_reference"), self.p
        arms = []
        for v in cast(list[HierarchyValue], c.values):
            h, a, b, x, tree = (*(self._alias(n) for n in ("idx_reference", "resources", "resources", "resources")), f"tree_{self._n}")
            kind, parent = p(v.res_type), p(v.parent_param)
            start = f"SELECT {a}.pk FROM resources {a} WHERE {a}.res_type = {kind} AND {a}.res_id = {p(v.res_id)} AND {a}.deleted = FALSE"
            if c.modifier == "below":  # the resources whose parent is in the tree
                step = (
                    f"SELECT {b}.pk FROM {tree} JOIN resources {a} ON {a}.pk = {tree}.pk JOIN idx_reference {h} "
                    f"ON {h}.target_id = {a}.res_id AND {h}.target_type = {kind} AND {h}.param = {parent} "
                    f"JOIN resources {b} ON {b}.pk = {h}.resource_pk AND {b}.res_type = {kind} AND {b}.deleted = FALSE"
                )
            else:  # the parents of what is in the tree
                step = (
                    f"SELECT {b}.pk FROM {tree} JOIN idx_reference {h} ON {h}.resource_pk = {tree}.pk AND {h}.param = {parent} "
                    f"AND {h}.target_type = {kind} JOIN resources {b} ON {b}.res_type = {kind} AND {b}.res_id = {h}.target_id "
                    f"AND {b}.deleted = FALSE"
                )
            walk = (
                f"WITH RECURSIVE {tree}(pk) AS ({start} UNION {step}) "
                f"SELECT {x}.res_id FROM {tree} JOIN resources {x} ON {x}.pk = {tree}.pk"
            )
            arms.append(
                f"SELECT {t}.resource_pk FROM idx_reference {t} WHERE {t}.param = {p(c.code)} AND {t}.target_type = {kind} "
                f"AND ({t}.target_id = {p(v.res_id)} OR {t}.target_id IN ({walk}))"
            )
        return f"{r}.pk IN ({' UNION '.join(arms)})"

    def _list(self, r: str, c: Criterion) -> str:
        """Resources a current List of ``c.values`` names in an entry (its ``item`` reference rows)."""
        lst, i, m = self._alias("resources"), self._alias("idx_reference"), self._alias("resources")
        ids = self.in_list(f"{lst}.res_id", [str(v) for v in c.values])
        return (
            f"{r}.pk IN (SELECT {m}.pk AS resource_pk FROM resources {lst} "
            f"JOIN idx_reference {i} ON {i}.resource_pk = {lst}.pk AND {i}.param = 'item' "
            f"JOIN resources {m} ON {m}.res_type = {i}.target_type AND {m}.res_id = {i}.target_id "
            f"WHERE {lst}.res_type = 'List' AND {ids} AND {lst}.deleted = FALSE)"
        )

    @staticmethod
    def _phonetic_keys(c: Criterion) -> list[str] | None:
        """A ``phonetic`` criterion of one value as its indexed keys (its one key, or its keys in
        pairs: search/phonetic.py), one AND-ed look-up each; None for anything else. For a common
        name, a GROUP BY over every row of its keys grew with the database (2.2 -> 8.5 ms p50 from
        10,000 to 100,000 Patients), as did the intersection of the keys one by one."""
        if c.param is None or c.param.xpath_usage != "phonetic" or c.modifier is not None or len(c.values) != 1:
            return None
        return lookup_keys(str(c.values[0])) or None

    def _phonetic_key(self, r: str, code: str, key: str) -> str:
        t = self._alias("idx_token")
        return f"{r}.pk IN (SELECT {t}.resource_pk FROM idx_token {t} WHERE {t}.param = {self.p(code)} AND {t}.code = {self.p(key)})"

    def _phonetic(self, r: str, c: Criterion) -> str:
        """Resources with the sound keys of every token of a value (search/phonetic.py), in
        ``idx_token``: per value the rows of its keys, counted per resource."""
        t = self._alias("idx_token")
        head = f"SELECT {t}.resource_pk FROM idx_token {t} WHERE {t}.param = {self.p(c.code)}"
        if c.modifier == "missing":
            return f"{r}.pk {'NOT IN' if c.missing else 'IN'} ({head})"
        arms = []
        for value in c.values:
            keys = search_keys(str(value))
            if keys:
                arms.append(
                    f"{head} AND {self.in_list(f'{t}.code', keys)} GROUP BY {t}.resource_pk HAVING count(DISTINCT {t}.code) = {len(keys)}"
                )
        return f"{r}.pk IN ({' UNION '.join(arms)})" if arms else FALSE

    def _near(self, r: str, c: Criterion) -> str:
        """Locations within each value's distance (search/near.py): a box of latitudes and longitudes
        (the ``(param, value)`` index), then the distance on the equirectangular projection."""
        arms = []
        for v in cast(list[NearValue], c.values):
            lat_lo, lat_hi, lon_lo, lon_hi, scale2, d2 = box_and_scale(v)
            a, b = self._alias("idx_number"), self._alias("idx_number")
            p = self.p
            arms.append(
                f"SELECT {a}.resource_pk FROM idx_number {a} JOIN idx_number {b} ON {b}.resource_pk = {a}.resource_pk "
                f"AND {b}.param = {p(LONGITUDE)} WHERE {a}.param = {p(LATITUDE)} AND {a}.value BETWEEN {p(lat_lo)} AND {p(lat_hi)} "
                f"AND {b}.value BETWEEN {p(lon_lo)} AND {p(lon_hi)} AND ({a}.value - {p(v.latitude)}) * ({a}.value - {p(v.latitude)}) "
                f"+ ({b}.value - {p(v.longitude)}) * ({b}.value - {p(v.longitude)}) * {p(scale2)} <= {p(d2)}"
            )
        return f"{r}.pk IN ({' UNION '.join(arms)})"

    def _token_list(self, t: str, c: Criterion) -> str | None:
        """A token criterion of several values that each name a code (``identifier=s1|v1,s2|v2``,
        as a Bundle's conditional references are resolved, ~20 at a time), as its codes per
        system: ``code IN (...) AND system = ?``, the same matches as the OR of ``code AND
        system`` pairs. That OR made SQLite read every row of the parameter (it cannot use the
        ``(param, code, system)`` index for it: 1 ms for 20 pairs on 1,800 rows, growing with
        the database) and PostgreSQL plan for ~3 ms a statement it ran in 0.3. With several
        systems, all the codes are listed first (for SQLite's index), then each system's. None:
        not such a criterion (the OR of each value's own condition)."""
        if c.ptype != "token" or c.modifier not in (None, "not") or len(c.values) < 2:
            return None
        by_system: dict[str | None, list[str]] = {}
        for v in c.values:
            if type(v) is not TokenValue or v.code is None:
                return None
            by_system.setdefault(v.system, []).append(cut(v.code))
        arms = []
        for system, codes in by_system.items():
            cond = [self.in_list(f"{t}.code", list(dict.fromkeys(codes)))]
            if system is not None:  # the system's own condition, as for one value
                cond.append(self._token_value(t, TokenValue(system, None)))
            arms.append(and_(cond))
        if len(arms) == 1:
            return arms[0]
        every = self.in_list(f"{t}.code", list(dict.fromkeys(code for codes in by_system.values() for code in codes)))
        return f"{every} AND {or_(arms)}"

    def _value(self, t: str, c: Criterion, v: Any) -> str:
        pt, mod, p = c.ptype, c.modifier, self.p
        if pt == "token":
            if mod == "text":
                return (
                    f"({t}.text LIKE {p(_escape_like(v) + '%')} ESCAPE '\\' OR {t}.text LIKE {p('% ' + _escape_like(v) + '%')} ESCAPE '\\')"
                )
            if isinstance(v, OfTypeValue):
                return f"({t}.system = {p(cut(f'{v.type_system}|{v.type_code}'))} AND {t}.code = {p(cut(v.value))})"
            return self._token_value(t, v)
        if pt == "string":
            norm = normalize_string(v)
            if mod == "exact":
                return f"({t}.value = {p(norm)} AND {t}.exact = {p(v)})"
            if mod == "contains":
                return f"{t}.value LIKE {p('%' + _escape_like(norm) + '%')} ESCAPE '\\'"
            return f"({t}.value >= {p(norm)} AND {t}.value < {p(norm + TOP)})"
        if pt == "date":
            return self.date_predicate(f"{t}.lo", f"{t}.hi", v, self._span(c))
        if pt == "number":
            return self.number_predicate(f"{t}.value", v.prefix, v.value, v.lo, v.hi)
        if pt == "quantity":
            return self._quantity(t, v)
        if pt == "uri":
            if mod == "contains":
                # anywhere in the URI, case-insensitive as :contains on strings (a scan of the
                # parameter's rows, as string :contains is)
                return f"lower({t}.value) LIKE {p('%' + _escape_like(v.lower()) + '%')} ESCAPE '\\'"
            if mod == "below":
                return f"({t}.value >= {p(cut(v))} AND {t}.value < {p(cut(v) + TOP)})"
            if mod == "above":
                return self.in_list(f"{t}.value", [cut(u) for u in _uri_prefixes(v)])
            return f"{t}.value = {p(cut(v))}"
        if pt == "reference":
            return self._reference(t, c, v)
        if pt == "composite":
            return self._composite(t, v)
        raise AssertionError(pt)

    def _composite(self, t: str, v: CompositeValue) -> str:
        conds = [self._token_value(t, v.first, "c1_code", "c1_system")]
        s2 = v.second  # its class follows v.second_type (parse_composite_value)
        if isinstance(s2, TokenValue):
            conds.append(self._token_value(t, s2, "c2_code", "c2_system"))
        elif isinstance(s2, QuantityValue):
            conds.append(self.number_predicate(f"{t}.c2_value", s2.prefix, s2.value, s2.lo, s2.hi))
            if s2.system:
                conds.append(f"{t}.c2_system = {self.p(s2.system)}")
            if s2.code:
                conds.append(f"{t}.c2_code = {self.p(s2.code)}")
        elif isinstance(s2, NumberValue):
            conds.append(self.number_predicate(f"{t}.c2_value", s2.prefix, s2.value, s2.lo, s2.hi))
        elif isinstance(s2, DateValue):
            conds.append(self.date_predicate(f"{t}.c2_lo", f"{t}.c2_hi", s2))
        else:
            norm = normalize_string(s2)
            conds.append(f"{t}.c2_text >= {self.p(norm)} AND {t}.c2_text < {self.p(norm + TOP)}")
        return and_(conds)

    def _quantity(self, t: str, v: QuantityValue) -> str:
        conds = [self.number_predicate(f"{t}.value", v.prefix, v.value, v.lo, v.hi)]
        if v.system:
            conds.append(f"{t}.system = {self.p(v.system)}")
        if v.code:
            if v.system:
                conds.append(f"{t}.code = {self.p(v.code)}")
            else:
                conds.append(f"({t}.code = {self.p(v.code)} OR {t}.unit = {self.p(v.code)})")
        return and_(conds)

    def _reference(self, t: str, c: Criterion, v: Any) -> str:
        if c.modifier == "identifier":
            return self._token_value(t, v, "id_value", "id_system")
        ref = v
        if self.base_url and ref.startswith(self.base_url):
            ref = ref[len(self.base_url) :]
        if "/" not in ref and ":" not in ref:
            rtype, rid, version, url = None, ref, None, None  # a bare id
        else:
            rtype, rid, version, url = parse_reference(ref)
        if url is not None:
            return f"{t}.url = {self.p(cut(url))}"
        if rid is None:
            return FALSE
        type_mod = c.modifier if c.modifier and c.modifier[:1].isupper() else None
        if rtype and type_mod and rtype != type_mod:
            return FALSE
        conds = [f"{t}.target_id = {self.p(rid)}"]
        if rtype or type_mod:
            conds.append(f"{t}.target_type = {self.p(rtype or type_mod)}")
        if version:
            conds.append(f"{t}.target_version = {self.p(version)}")
        return and_(conds)

    def _chain(self, r: str, c: Criterion, inner: Criterion) -> str:
        ref = self._alias("idx_reference")
        target = f"chain_{self._n}"
        head = (
            f"SELECT {ref}.resource_pk FROM idx_reference {ref} JOIN resources {target} "
            f"ON {target}.res_type = {ref}.target_type AND {target}.res_id = {ref}.target_id "
            f"WHERE {ref}.param = {self.p(c.code)} AND {self.in_list(f'{target}.res_type', list(c.chain_types))} "
            f"AND {target}.deleted = FALSE"
        )
        return f"{r}.pk IN ({head} AND {self.clause(target, inner)})"

    def _has(self, r: str, c: Criterion, has: Criterion) -> str:
        ref = self._alias("idx_reference")
        src = f"has_{self._n}"
        head = (
            f"SELECT {ref}.target_id FROM idx_reference {ref} JOIN resources {src} ON {src}.pk = {ref}.resource_pk "
            f"WHERE {ref}.param = {self.p(c.has_param)} AND {src}.res_type = {self.p(c.has_type)} "
            f"AND {src}.deleted = FALSE"
        )
        inner = self.clause(src, has)
        target = f"{ref}.target_type = {self.p(c.res_types[0])}" if len(c.res_types) == 1 else f"{ref}.target_type = {r}.res_type"
        return f"{r}.res_id IN ({head} AND {inner} AND {target})"

    def compartment(self, r: str, code: str, focal_id: str, members: dict[str, tuple[str, ...]]) -> str:
        """Membership of ``code``/``focal_id``'s compartment for resources of ``members`` (type ->
        the parameters that put it there, ``{def}``: the focal resource itself; search/compartment.py),
        as one ``r.pk IN (...)`` that the page planner drives like any index criterion.

        A search of one type looks its parameters' rows up by value; a search over several types
        starts from the rows that point at the focal resource (``(target_type, target_id)``: as many
        as the compartment holds) and keeps those whose type and parameter put their resource in it
        (``$everything``'s pages use this clause too: engine.compartment_members), so the outer
        query need not name the types."""
        by_params: dict[tuple[str, ...], list[str]] = {}
        focal = False
        for res_type, params in members.items():
            refs = tuple(p for p in params if p != FOCAL)
            if refs:
                by_params.setdefault(refs, []).append(res_type)
            focal = focal or (len(refs) < len(params) and res_type == code)
        ref = self._alias("idx_reference")
        points_here = f"{ref}.target_id = {self.p(focal_id)} AND {ref}.target_type = {self.p(code)}"
        arms = []
        if len(members) == 1 and not focal:  # a type search: the outer query keeps to the type
            (params,) = by_params
            arms.append(
                f"SELECT {ref}.resource_pk FROM idx_reference {ref} WHERE {self.in_list(f'{ref}.param', list(params))} AND {points_here}"
            )
        elif by_params:
            m = f"member_{self._n}"
            # the (type, parameter) pairs as a row-value IN of a VALUES list: as an OR of IN lists
            # PostgreSQL took ~6 ms to plan the Patient compartment's; as a join SQLite drove the
            # look-up from the list, reading a shared parameter's rows once per type
            pairs = ", ".join(f"({self.p(t)}, {self.p(p)})" for ps, ts in by_params.items() for t in ts for p in ps)
            arms.append(
                f"SELECT {ref}.resource_pk FROM idx_reference {ref} JOIN resources {m} ON {m}.pk = {ref}.resource_pk "
                f"WHERE {points_here} AND ({m}.res_type, {ref}.param) IN (VALUES {pairs})"
            )
        if focal:
            f = f"focal_{self._n}"
            arms.append(
                f"SELECT {f}.pk AS resource_pk FROM resources {f} WHERE {f}.res_type = {self.p(code)} AND {f}.res_id = {self.p(focal_id)} "
                f"AND {f}.deleted = FALSE"
            )
        return f"{r}.pk IN ({' UNION ALL '.join(arms)})" if arms else FALSE

    # ------------------------------------------------------------------------- sorting

    def sort_expr(self, r: str, code: str, descending: bool, res_types: tuple[str, ...]) -> str:
        """A scalar sort key: min value for ascending, max for descending (multi-valued params)."""
        if code == "_id":
            return f"{r}.res_id"
        if code == "_lastUpdated":
            return f"{r}.updated_us"
        ptype = params_for(res_types[0])[code].type
        table = TABLES[ptype]
        t = self._alias(table)
        col = ("hi" if descending else "lo") if ptype == "date" else SORT_COLUMNS[ptype]
        agg = "max" if descending else "min"
        return f"(SELECT {agg}({t}.{col}) FROM {table} {t} WHERE {t}.resource_pk = {r}.pk AND {t}.param = {self.p(code)})"


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
