"""Running a search: parse -> SQL -> page of stored bodies (+ includes, total, links).

Paging is keyset paging on (sort keys..., pk): a page token (``_cursor``)
carries the last row's sort keys and pk, so the next page starts strictly
after it. New resources get higher pks, so a walk over the pages returns
every resource that matched at the start exactly once even while inserts
happen. The default order is ``pk`` ascending (insertion order).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import sqlalchemy as sa

from .. import jsonio, paging
from ..errors import FhirError, Issue, warning
from ..storage.db import Database
from ..storage.index_tables import OTHER_REFERENCE
from ..storage.stored_terminology import terminology_engine
from .compartment import FOCAL, Compartment, CompartmentPage, Member, members
from .near import NearValue, distance_extension
from .parameters import NEAR
from .parse import CURSOR, IncludeSpec, SearchQuery, parse_query
from .scope_filter import restrict_criteria
from .sql import FALSE, SqlBuilder, and_, dbapi_sql, or_
from .subsetting import Subsetting
from .terminology_codes import expand_codes

Entry = tuple[str, str, bytes]
MAX_INCLUDE_ROUNDS = 8
MAX_INCLUDES = 5000


@dataclass
class SearchResult:
    """What the HTTP layer needs to build a searchset Bundle."""

    matches: list[Entry] = field(default_factory=list)
    includes: list[Entry] = field(default_factory=list)
    #: extensions of a match's ``Bundle.entry.search`` by (type, id): a ``near`` match's distance
    match_extensions: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    total: int | None = None
    self_params: list[tuple[str, str]] = field(default_factory=list)
    first_params: list[tuple[str, str]] | None = None
    next_params: list[tuple[str, str]] | None = None
    prev_params: list[tuple[str, str]] | None = None
    issues: list[Issue] = field(default_factory=list)


def run_search(
    source: Database | sa.Connection,
    res_type: str | None,
    params: list[tuple[str, str]],
    *,
    strict: bool,
    default_count: int,
    max_count: int,
    base_url: str | None = None,
    searchable: Callable[[str], bool] | None = None,
    readable: Callable[[str], bool] | None = None,
    compartment: Compartment | None = None,
) -> SearchResult:
    """Search ``res_type`` (None: all types / ``_type``) with ``params`` as given in the query string.

    ``source`` is the :class:`Database` (a read of its own: one autocommit
    statement, or a read-only snapshot when the page needs more than one) or an
    open connection (inside a write transaction). ``base_url`` (e.g.
    ``http://host/fhir``) lets absolute reference values under this server
    match local references. ``searchable`` (the caller's scopes): chains and ``_has`` may only
    look into types it allows (search/scope_filter.py); ``readable``: included resources of other
    types are left out, and ``:iterate`` never walks on from them. None: no restriction.
    ``compartment``: only resources in it (search/compartment.py); ``res_type`` None: of every
    type it holds, or of those of ``_type``.
    """
    q = parse_query(res_type, params, strict=strict)
    expand_codes(q.criteria, partial(_stored_value_set, source, searchable), partial(terminology_engine, source))
    if searchable is not None:
        restrict_criteria(q.criteria, searchable)
    out = SearchResult(issues=list(q.issues), self_params=list(q.used))
    count = default_count if q.count is None else q.count
    if count > max_count:
        out.issues.append(warning("informational", f"_count={count} reduced to the maximum {max_count}"))
        count = max_count
    b = SqlBuilder(base_url)
    criteria = b.clauses("r", q.criteria)
    if compartment is not None:
        # ``*`` without ``_type`` keeps q.res_types empty: the clause itself keeps to the member
        # types (an IN list of the Patient compartment's 66 was planned on every search)
        criteria.append(b.compartment("r", compartment.code, compartment.focal_id, members(compartment, q.res_types)))
    where = ["r.deleted = FALSE"]
    if q.res_types:
        # SQLite without statistics (no ANALYZE yet: any database filled through the API) walks
        # every row of the type through the (res_type, updated_us) index and probes the
        # criterion's pk list: 210 us instead of 4 for one NIK among 3,000 Patients, linear in
        # the type's size. A unary + keeps that index out when an index criterion can drive.
        driven = _dialect(source) == "sqlite" and any(c.startswith("r.pk IN (") for c in criteria)
        where.append(b.in_list("+r.res_type" if driven else "r.res_type", list(q.res_types)))
    where.extend(criteria)
    where_sql = " AND ".join(where)

    if q.sort and len(q.res_types) != 1 and any(k.param is not None for k in q.sort):
        raise FhirError.of(400, "not-supported", "_sort by a search parameter needs exactly one resource type")
    keys = "".join(f", {b.sort_expr('r', k.code, k.descending, q.res_types)} AS k{i}" for i, k in enumerate(q.sort))
    count_sql = f"SELECT count(*) FROM resources r WHERE {where_sql}"

    if q.summary == "count" or count == 0:
        with _rows(source, snapshot=False) as rows:
            out.total = rows(count_sql, b.params)[0][0]
        out.first_params = _with_count(out.self_params, count)
        return out

    kcols = [(f"s.k{i}", k.descending) for i, k in enumerate(q.sort)]
    direction, keyset = "n", ""
    if q.cursor is not None:
        cur = q.cursor
        _check_cursor(cur, q)
        direction = cur.direction
        keyset = " WHERE " + _keyset(b, kcols, cur.keys, cur.pk, after=direction == "n")
    order = ", ".join(_order(kcols, forward=direction == "n"))
    page_sql = (
        f"SELECT * FROM (SELECT r.pk, r.res_type, r.res_id, r.body{keys} FROM resources r "
        f"WHERE {where_sql}) s{keyset} ORDER BY {order} LIMIT {b.p(count + 1)}"
    )
    wants_total = q.total == "accurate" or q.total == "estimate"
    # criteria that are all index look-ups (no _sort, a first or next page): one of them on
    # PostgreSQL, whose planner chose badly for the semi-join (SQLite's plain statement is fixed by
    # ``+r.res_type`` above), and several of them on both engines, are paged by their counts
    dialect = _dialect(source)
    subqueries = _index_subqueries(criteria) if not q.sort and direction == "n" else None
    several = subqueries is not None and len(subqueries) > 1
    if subqueries is not None and not several and dialect != "postgresql":
        subqueries = None
    after = q.cursor.pk if q.cursor is not None else None
    if subqueries is not None and not several:
        page_sql = _page_by_count(b, subqueries, after, list(q.res_types), count + 1)
    with _rows(source, snapshot=wants_total or bool(q.includes)) as rows:
        if subqueries is not None and several:
            counts = rows(_capped_counts(b, subqueries, after), b.params)[0]
            page_sql = _page_of_intersection(b, subqueries, [int(n) for n in counts], after, list(q.res_types), count + 1, dialect)
        found = rows(page_sql, b.params)
        if subqueries is not None:
            # an arm of a UNION ALL, or rows joined after their page's keys: no order promised
            found.sort(key=lambda row: row[0])
        more = len(found) > count
        found = found[:count]
        if direction == "p":
            found.reverse()
        has_next = more if direction == "n" else True
        has_prev = q.cursor is not None if direction == "n" else more

        base_params = list(q.used)
        if q.cursor_raw is not None:
            out.self_params = [*_with_count(base_params, count), (CURSOR, q.cursor_raw)]
        out.first_params = _with_count(base_params, count)
        if found and has_next:
            last = found[-1]
            out.next_params = [*_with_count(base_params, count), (CURSOR, paging.encode(list(last[4:]), last[0], "n"))]
        if found and has_prev:
            first = found[0]
            out.prev_params = [*_with_count(base_params, count), (CURSOR, paging.encode(list(first[4:]), first[0], "p"))]

        if q.total == "accurate" or (q.total == "estimate" and (q.cursor is not None or more)):
            out.total = rows(count_sql, b.params)[0][0]
        elif q.cursor is None and not more:
            out.total = len(found)  # known for free

        matches = [(row[0], row[1], row[2], _body(row[3])) for row in found]
        included = _includes(rows, q, matches, readable) if q.includes else []
    points = [
        v for c in q.criteria if c.code == NEAR[0] and c.chain is None and c.modifier is None for v in c.values if isinstance(v, NearValue)
    ]
    if points:  # from the stored bodies: ``_elements`` may leave the position out of the answer
        for _, t, i, body in matches:
            if (distance := distance_extension(jsonio.loads(body), points)) is not None:
                out.match_extensions[(t, i)] = [distance]
    subsetting = Subsetting(q.summary, q.elements)  # search/subsetting.py: the same rule as a read's
    out.matches = [(t, i, subsetting.apply(body, t)) for _, t, i, body in matches]
    out.includes = [(t, i, subsetting.apply(body, t, included=True)) for _, t, i, body in included]
    return out


def filter_sql(
    source: Database | sa.Connection, res_type: str, queries: list[list[tuple[str, str]]], *, base_url: str | None, prefix: str
) -> tuple[str, dict[str, Any]]:
    """``SELECT r.pk ...`` of the current ``res_type`` resources that match any of ``queries``
    (each a search's parameters, strictly parsed: Bulk Data ``_typeFilter``), and its values, whose
    placeholders start with ``prefix``. ``source``: where stored value sets are looked up
    (``:in``, ``:not-in``)."""
    b = SqlBuilder(base_url, prefix=prefix)
    alternatives = []
    for params in queries:
        q = parse_query(res_type, params, strict=True)
        expand_codes(q.criteria, partial(_stored_value_set, source, None), partial(terminology_engine, source))
        alternatives.append(and_(b.clauses("r", q.criteria)))
    sql = f"SELECT r.pk FROM resources r WHERE r.res_type = {b.p(res_type)} AND r.deleted = FALSE AND {or_(alternatives)}"
    return sql, b.params


Rows = Callable[[str, dict[str, Any]], list[tuple]]


def compartment_members(source: Database | sa.Connection, page: CompartmentPage) -> list[Member]:
    """Up to ``page.count + 1`` current members (pk, type, id, body) of a compartment after
    ``page.after_pk``, in key order: ``$everything``'s pages (operations/everything.py).

    Membership is the compartment search's (``SqlBuilder.compartment``). The member keys after the
    cursor are read once (one look-up of the rows pointing at the focal resource) and sorted; each
    is then checked (current, ``_since``, ``start``/``end``) until the page is full, and the page's
    rows are read with their bodies. Before, one statement joined
    the reference rows to ``resources`` and took ``DISTINCT`` over the bodies: 27-33 ms a page of 50
    for the Synthea Patient with 3,486 members, 1.4-1.5 s to walk them all."""
    # the focal resource itself ({def}) is not a page's member: $everything puts it first
    members = {t: refs for t, params in page.members.items() if (refs := tuple(p for p in params if p != FOCAL))}
    if not members:
        return []
    b = SqlBuilder()
    subqueries = _index_subqueries([b.compartment("r", page.compartment, page.focal_id, members)])
    if subqueries is None:  # not reached: every member type here has a reference parameter
        return []
    (inner,) = subqueries
    cut = f" WHERE q.resource_pk > {b.p(page.after_pk)}" if page.after_pk is not None else ""
    where = ["r.deleted = FALSE"]
    if len(members) == 1:  # a one-type membership keeps to the type in the outer query (SqlBuilder.compartment)
        where.append(b.in_list("r.res_type", list(members)))
    if page.since:
        where.append(f"r.updated_us >= {b.p(page.since[0])}")
    if page.start or page.end:
        lo = page.start[0] if page.start else -(2**62)
        hi = page.end[1] if page.end else 2**62
        dated = "SELECT 1 FROM idx_date d WHERE d.resource_pk = r.pk AND d.param = 'date'"
        where.append(f"(NOT EXISTS ({dated}) OR EXISTS ({dated} AND d.hi >= {b.p(lo)} AND d.lo <= {b.p(hi)}))")
    # each key, in order, is checked by a probe of its own until the page is full (PostgreSQL: OFFSET 0
    # keeps the probe from becoming a join, whose plan could walk ``resources`` in key order)
    fence = " OFFSET 0" if _dialect(source) == "postgresql" else ""
    sql = (
        f"SELECT x.pk, x.res_type, x.res_id, x.body FROM (SELECT k.pk FROM (SELECT DISTINCT q.resource_pk AS pk FROM ({inner}) q{cut}) k "
        f"WHERE EXISTS (SELECT 1 FROM resources r WHERE r.pk = k.pk AND {' AND '.join(where)}{fence}) "
        f"ORDER BY k.pk LIMIT {b.p(page.count + 1)}) p JOIN resources x ON x.pk = p.pk ORDER BY x.pk"
    )
    with _rows(source, snapshot=False) as rows:
        return [Member(row[0], row[1], row[2], _body(row[3])) for row in rows(sql, b.params)]


def _stored_value_set(source: Database | sa.Connection, searchable: Callable[[str], bool] | None, ref: str) -> dict[str, Any] | None:
    """A ValueSet clients stored, by ``ValueSet/[id]`` or canonical ``url[|version]`` (token ``:in``);
    403 for a caller who may not search ValueSets (``searchable``; None: no restriction)."""
    if searchable is not None and not searchable("ValueSet"):
        raise FhirError(403, [Issue("error", "forbidden", f"'{ref}' is a stored ValueSet, which the access token may not search")])
    if ref.startswith("ValueSet/"):
        params = [("_id", ref.removeprefix("ValueSet/"))]
    else:
        url, _, version = ref.partition("|")
        params = [("url", url), *([("version", version)] if version else [])]
    found = run_search(source, "ValueSet", params, strict=True, default_count=1, max_count=1).matches
    return jsonio.loads(found[0][2]) if found else None


def _index_subqueries(criteria: list[str]) -> list[str] | None:
    """The subqueries of criteria that are all ``r.pk IN (<subquery>)`` (index look-ups,
    chains), or None. Index rows exist only for stored, not deleted resources."""
    if not criteria:
        return None
    out = []
    for clause in criteria:
        head = "r.pk IN ("
        if not clause.startswith(head) or not clause.endswith(")"):
            return None
        inner = clause[len(head) : -1]
        depth = 0
        for ch in inner:  # the closing parenthesis must be the clause's last: one subquery, nothing ORed
            depth += 1 if ch == "(" else -1 if ch == ")" else 0
            if depth < 0:
                return None
        out.append(inner)
    return out


#: matches up to which a page is taken by sorting every matching key (``_page_by_count``); past
#: it, the planner's semi-join for the page's keys (a walk of the type's keys in key order when it
#: estimates well: for N resources of the type about ``count * N / matches`` keys, at most ~10,500
#: of 1,000,000 Patients, read from the index; or every match sorted, a few thousand just past it)
PILOT_CAP = 2000


def _page_by_count(b: SqlBuilder, subqueries: list[str], after: int | None, res_types: list[str], wanted: int) -> str:
    """The page of a search whose criteria are all index look-ups (PostgreSQL, key order, first
    or next page), as one statement that picks its plan by the number of matches, counted up to
    ``PILOT_CAP`` when it runs rather than estimated by the planner (the estimates for index-table
    ranges were 5-13x off: ``gender=male`` 372 for 5,044 rows at 10,000 Patients):

    * few matches: every matching key, sorted, joined to ``resources`` for the page's rows only.
      As ``WHERE r.pk IN (...) ORDER BY r.pk`` the planner either fetched every match before the
      LIMIT or walked ``resources`` in key order (~18,000 rows read for 21 of 1,002 birth-date
      matches at 1,000,000 Patients);
    * many: the page's keys first, as the plain semi-join ``r.pk IN (...)`` over the type's current
      keys in key order (``ix_resources_res_type_pk``, migration 0021, read index-only), then
      ``resources`` for those rows only. At 1,000,000 Patients with 3 Encounters each
      ``family=Santoso`` (~50,000 matches) is a merge semi join of that index with the
      per-resource index ``(resource_pk, param, value)`` read in order, the criterion checked in
      the index: 158 buffers for the statement. Through ``pk_resources`` the walk read every row
      of every type in between from the table, and a planner that misjudged the matches (10,096
      estimated; migration 0022's statistics of the pairs give 34,511) sorted all of them: 1,192
      buffers. A per-row ``EXISTS (... OFFSET 0)`` probe, which no estimate can turn into a hash
      of every match, cost 2,499 buffers at 1,000,000 Patients (one descent per row walked), so
      the planner keeps this choice past the cap.

    The matching keys (up to ``PILOT_CAP + 1``) are read once into a CTE, which gives both the
    count and the few arm's keys; the count is a CTE of its own (as a scalar subquery in each arm
    it was two scans of the keys: 0.1 ms of ~1 ms for 1,002 birth dates at 1,000,000 Patients);
    the arm whose one-time filter fails is never started."""
    keyset = f" AND r.pk > {b.p(after)}" if after is not None else ""
    cut = f" WHERE q.resource_pk > {b.p(after)}" if after is not None else ""
    found = " INTERSECT ".join(f"SELECT q.resource_pk FROM ({sub}) q{cut}" for sub in subqueries)
    kinds = [b.in_list("r.res_type", res_types)] if res_types else []
    where = " AND ".join(["r.deleted = FALSE", *kinds])
    n = "(SELECT n.c FROM n)"  # counted once, in its own CTE: both arms' one-time filters read it
    few = (
        f"SELECT r.pk, r.res_type, r.res_id, r.body FROM (SELECT DISTINCT k.resource_pk FROM k) m "
        f"JOIN resources r ON r.pk = m.resource_pk WHERE {where} AND {n} <= {PILOT_CAP} ORDER BY r.pk LIMIT {b.p(wanted)}"
    )
    member = " AND ".join(f"r.pk IN ({sub})" for sub in subqueries)
    page = f"SELECT r.pk FROM resources r WHERE {where}{keyset} AND {member} AND {n} > {PILOT_CAP} ORDER BY r.pk LIMIT {b.p(wanted)}"
    many = f"SELECT x.pk, x.res_type, x.res_id, x.body FROM ({page}) p JOIN resources x ON x.pk = p.pk"
    keys = f"k AS MATERIALIZED ({found} LIMIT {PILOT_CAP + 1}), n AS MATERIALIZED (SELECT count(*) AS c FROM k)"
    return f"WITH {keys} ({few}) UNION ALL ({many})"


def _capped_counts(b: SqlBuilder, subqueries: list[str], after: int | None) -> str:
    """One row: each criterion's matching keys after ``after``, counted up to ``PILOT_CAP + 1``
    (at most that many index entries read per criterion, however large the database)."""
    cut = f" WHERE q.resource_pk > {b.p(after)}" if after is not None else ""
    counts = (f"(SELECT count(*) FROM (SELECT 1 FROM ({sub}) q{cut} LIMIT {PILOT_CAP + 1}) c)" for sub in subqueries)
    return f"SELECT {', '.join(counts)}"


def _page_of_intersection(
    b: SqlBuilder, subqueries: list[str], counts: list[int], after: int | None, res_types: list[str], wanted: int, dialect: str
) -> str:
    """The page of a search of several index criteria, AND-ed (key order, first or next page), by
    their counts (``_capped_counts``). One statement for all of them, as for one criterion,
    took their intersection (``INTERSECT``), which reads every key of every criterion:
    ``family=Santoso&gender=male`` at 100,000 Patients read 54,705 keys, 40 ms of 43, and ten times
    as many at 1,000,000. Here no plan reads a criterion's keys to the end unless that criterion has
    at most ``PILOT_CAP`` of them:

    * one criterion has few keys: they are sorted and walked in key order, the others checked per key
      by a probe of their own (``OFFSET 0``: never a hash of all their keys), until the page is full;
    * all have many: the type's keys are walked in key order (``ix_resources_res_type_pk``), each
      checked by a probe per criterion, until the page is full. As a semi-join (one criterion's way)
      the planner read all of a criterion's keys to sort them. The walk is as long as the
      intersection is sparse (983 keys for ``family=Santoso&gender=male``, 2 % of Patients
      matching), whatever the size of the database."""
    keyset = f" AND r.pk > {b.p(after)}" if after is not None else ""
    cut = f" WHERE q.resource_pk > {b.p(after)}" if after is not None else ""
    # SQLite: the type test by no index (``+``), so that the walk goes in key (rowid) order; its
    # fences are ``LIMIT -1 OFFSET 0`` (an OFFSET needs a LIMIT there), and its EXISTS are probes
    sqlite = dialect == "sqlite"
    kinds = [b.in_list("+r.res_type" if sqlite else "r.res_type", res_types)] if res_types else []
    where = " AND ".join(["r.deleted = FALSE", *kinds])
    fence = " LIMIT -1 OFFSET 0" if sqlite else " OFFSET 0"
    probe_fence = "" if sqlite else fence

    def probes(skip: int) -> str:
        return "".join(
            f" AND EXISTS (SELECT 1 FROM ({sub}) s WHERE s.resource_pk = r.pk{probe_fence})"
            for i, sub in enumerate(subqueries)
            if i != skip
        )

    fewest = min(range(len(subqueries)), key=counts.__getitem__)
    if counts[fewest] <= PILOT_CAP:
        keys = f"SELECT DISTINCT q.resource_pk FROM ({subqueries[fewest]}) q{cut} ORDER BY 1{fence}"
        return (
            f"SELECT r.pk, r.res_type, r.res_id, r.body FROM ({keys}) k JOIN resources r ON r.pk = k.resource_pk "
            f"WHERE {where}{probes(fewest)} ORDER BY r.pk LIMIT {b.p(wanted)}"
        )
    page = f"SELECT r.pk FROM resources r WHERE {where}{keyset}{probes(-1)} ORDER BY r.pk LIMIT {b.p(wanted)}"
    return f"SELECT x.pk, x.res_type, x.res_id, x.body FROM ({page}) p JOIN resources x ON x.pk = p.pk"


def _body(value: Any) -> bytes:
    """The stored bytes of a found resource (never NULL: searches and includes leave deleted ones out)."""
    return value if isinstance(value, bytes) else bytes(value)


@contextmanager
def _rows(source: Database | sa.Connection, *, snapshot: bool) -> Iterator[Rows]:
    """A function running one SELECT (``:vN`` placeholders) and returning its rows."""
    if isinstance(source, sa.Connection):
        dialect = source.dialect.name

        def run(sql: str, params: dict[str, Any]) -> list[tuple]:
            return [tuple(r) for r in source.exec_driver_sql(dbapi_sql(sql, dialect), params)]

        yield run
        return
    with source.raw_reads(snapshot=snapshot) as fetch_all:
        yield lambda sql, params: fetch_all(dbapi_sql(sql, source.dialect), params)


def _dialect(source: Database | sa.Connection) -> str:
    return source.dialect.name if isinstance(source, sa.Connection) else source.dialect


def _with_count(params: list[tuple[str, str]], count: int) -> list[tuple[str, str]]:
    return [(n, v) for n, v in params if n != "_count"] + [("_count", str(count))]


# ----------------------------------------------------------------------------- keyset paging


def _check_cursor(cur: paging.PageToken, q: SearchQuery) -> None:
    """A page token must fit this search's _sort: same number of keys, each of the key's type."""
    bad = FhirError.of(400, "invalid", f"{CURSOR}: page token does not match the _sort of this search")
    if len(cur.keys) != len(q.sort):
        raise bad
    for key, value in zip(q.sort, cur.keys, strict=True):
        numeric = key.code == "_lastUpdated" or (key.param is not None and key.param.type in ("date", "number", "quantity"))
        wanted = (int, float) if numeric else (str,)
        if value is not None and (isinstance(value, bool) or not isinstance(value, wanted)):
            raise bad


def _order(kcols: list[tuple[str, bool]], *, forward: bool) -> list[str]:
    out = []
    for col, desc in kcols:
        if forward:
            out.append(f"{col} {'DESC' if desc else 'ASC'} NULLS LAST")
        else:
            out.append(f"{col} {'ASC' if desc else 'DESC'} NULLS FIRST")
    out.append("s.pk ASC" if forward else "s.pk DESC")
    return out


def _keyset(b: SqlBuilder, kcols: list[tuple[str, bool]], values: list, last_pk: int, *, after: bool) -> str:
    """Rows strictly after (or before) the cursor in the forward order (NULLs last)."""
    ors: list[str] = []
    eqs: list[str] = []
    for (col, desc), v in zip(kcols, values, strict=True):  # same length: _check_cursor
        if after:
            step = FALSE if v is None else f"({col} {'<' if desc else '>'} {b.p(v)} OR {col} IS NULL)"
        else:
            step = f"{col} IS NOT NULL" if v is None else f"{col} {'>' if desc else '<'} {b.p(v)}"
        ors.append(and_([*eqs, step]))
        eqs.append(f"{col} IS NULL" if v is None else f"{col} = {b.p(v)}")
    ors.append(and_([*eqs, f"s.pk {'>' if after else '<'} {b.p(last_pk)}"]))
    return or_(ors)


# ----------------------------------------------------------------------------- includes


def _includes(rows: Rows, q: SearchQuery, matches: list, readable: Callable[[str], bool] | None) -> list:
    seen = {(t, i) for _, t, i, _ in matches}
    result: list = []
    current = matches
    specs = list(q.includes)
    for round_no in range(MAX_INCLUDE_ROUNDS):
        active = specs if round_no == 0 else [s for s in specs if s.iterate]
        if not active or not current:
            break
        new = []
        for spec in active:
            found = _reverse(rows, spec, current) if spec.reverse else _forward(rows, spec, current)
            for row in found:
                key = (row[1], row[2])
                if readable is not None and not readable(row[1]):
                    continue  # neither returned nor a step of :iterate (it would lead past the scopes)
                if key not in seen:
                    seen.add(key)
                    new.append(row)
        result.extend(new)
        if len(result) >= MAX_INCLUDES:
            break
        current = new
    return result[:MAX_INCLUDES]


def _forward(rows: Rows, spec: IncludeSpec, sources: list) -> list:
    pks = [pk for pk, t, _, _ in sources if spec.source_type in ("*", t)]
    if not pks:
        return []
    b = SqlBuilder()
    conds = [b.in_list("ref.resource_pk", pks), "t.deleted = FALSE"]
    if spec.param != "*":
        conds.append(f"ref.param = {b.p(spec.param)}")
    else:  # every reference search parameter, not the references none covers
        conds.append(f"ref.param <> {b.p(OTHER_REFERENCE)}")
    if spec.target_type:
        conds.append(f"t.res_type = {b.p(spec.target_type)}")
    sql = (
        "SELECT DISTINCT t.pk, t.res_type, t.res_id, t.body FROM idx_reference ref "
        "JOIN resources t ON t.res_type = ref.target_type AND t.res_id = ref.target_id "
        f"WHERE {' AND '.join(conds)}"
    )
    return [(r[0], r[1], r[2], _body(r[3])) for r in rows(sql, b.params)]


def _reverse(rows: Rows, spec: IncludeSpec, targets: list) -> list:
    wanted = {(t, i) for _, t, i, _ in targets}
    if spec.target_type:
        wanted = {w for w in wanted if w[0] == spec.target_type}
    if not wanted:
        return []
    b = SqlBuilder()
    conds = [
        b.in_list("ref.target_id", sorted({i for _, i in wanted})),
        b.in_list("ref.target_type", sorted({t for t, _ in wanted})),
        "s.deleted = FALSE",
    ]
    if spec.source_type != "*":
        conds.append(f"s.res_type = {b.p(spec.source_type)}")
    if spec.param != "*":
        conds.append(f"ref.param = {b.p(spec.param)}")
    else:
        conds.append(f"ref.param <> {b.p(OTHER_REFERENCE)}")
    sql = (
        "SELECT s.pk, s.res_type, s.res_id, s.body, ref.target_type, ref.target_id FROM idx_reference ref "
        f"JOIN resources s ON s.pk = ref.resource_pk WHERE {' AND '.join(conds)}"
    )
    out, seen = [], set()
    for pk, res_type, res_id, body, target_type, target_id in rows(sql, b.params):
        if (target_type, target_id) in wanted and pk not in seen:
            seen.add(pk)
            out.append((pk, res_type, res_id, _body(body)))
    return out
