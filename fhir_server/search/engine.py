"""Running a search: parse -> SQL -> page of stored bodies (+ includes, total, links).

Paging is keyset paging on (sort keys..., pk): a page token (``_cursor``)
carries the last row's sort keys and pk, so the next page starts strictly
after it. New resources get higher pks, so a walk over the pages returns
every resource that matched at the start exactly once even while inserts
happen. The default order is ``pk`` ascending (insertion order).
"""

from __future__ import annotations

from dataclasses import dataclass, field
import orjson
import sqlalchemy as sa

from ..errors import FhirError, Issue, warning
from ..storage.index_tables import idx_reference
from ..storage.tables import resources
from .parse import CURSOR, IncludeSpec, SearchQuery, encode_cursor, parse_query
from .registry import summary_info
from .sql import SqlBuilder

Entry = tuple[str, str, bytes]
SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}
MAX_INCLUDE_ROUNDS = 8
MAX_INCLUDES = 5000


@dataclass
class SearchResult:
    """What the HTTP layer needs to build a searchset Bundle."""

    matches: list[Entry] = field(default_factory=list)
    includes: list[Entry] = field(default_factory=list)
    total: int | None = None
    self_params: list[tuple[str, str]] = field(default_factory=list)
    first_params: list[tuple[str, str]] | None = None
    next_params: list[tuple[str, str]] | None = None
    prev_params: list[tuple[str, str]] | None = None
    issues: list[Issue] = field(default_factory=list)


def run_search(
    conn: sa.Connection,
    res_type: str | None,
    params: list[tuple[str, str]],
    *,
    strict: bool,
    default_count: int,
    max_count: int,
    base_url: str | None = None,
) -> SearchResult:
    """Search ``res_type`` (None: all types / ``_type``) with ``params`` as given in the query string.

    ``base_url`` (e.g. ``http://host/fhir``) lets absolute reference values
    under this server match local references.
    """
    q = parse_query(res_type, params, strict=strict)
    out = SearchResult(issues=list(q.issues), self_params=list(q.used))
    count = default_count if q.count is None else q.count
    if count > max_count:
        out.issues.append(warning("informational", f"_count={count} reduced to the maximum {max_count}"))
        count = max_count
    builder = SqlBuilder(base_url)
    r = resources.alias("r")
    where = [r.c.deleted == sa.false()]
    if q.res_types:
        where.append(r.c.res_type.in_(q.res_types) if len(q.res_types) > 1 else r.c.res_type == q.res_types[0])
    where.extend(builder.clauses(r, q.criteria))

    if q.sort and len(q.res_types) != 1 and any(k.param is not None for k in q.sort):
        raise FhirError.of(400, "not-supported", "_sort by a search parameter needs exactly one resource type")
    keys = [builder.sort_expr(r, k.code, k.descending, q.res_types).label(f"k{i}") for i, k in enumerate(q.sort)]
    inner = sa.select(r.c.pk, r.c.res_type, r.c.res_id, r.c.body, *keys).where(*where).subquery("s")
    kcols = [(inner.c[f"k{i}"], k.descending) for i, k in enumerate(q.sort)]

    if q.summary == "count" or count == 0:
        out.total = _count(conn, where, r)
        out.first_params = _with_count(out.self_params, count)
        return out

    direction = "n"
    stmt = sa.select(inner)
    if q.cursor is not None:
        cur = q.cursor
        if len(cur["k"]) != len(kcols):
            raise FhirError.of(400, "invalid", f"{CURSOR}: page token does not match the _sort of this search")
        direction = cur["d"]
        stmt = stmt.where(_keyset(kcols, cur["k"], inner.c.pk, cur["pk"], after=direction == "n"))
    stmt = stmt.order_by(*_order(kcols, inner.c.pk, forward=direction == "n")).limit(count + 1)
    rows = conn.execute(stmt).all()
    more = len(rows) > count
    rows = rows[:count]
    if direction == "p":
        rows.reverse()
    has_next = more if direction == "n" else True
    has_prev = q.cursor is not None if direction == "n" else more

    base_params = list(q.used)
    if q.cursor_raw is not None:
        out.self_params = _with_count(base_params, count) + [(CURSOR, q.cursor_raw)]
    out.first_params = _with_count(base_params, count)
    if rows and has_next:
        last = rows[-1]
        token = encode_cursor([last._mapping[f"k{i}"] for i in range(len(kcols))], last.pk, "n")
        out.next_params = _with_count(base_params, count) + [(CURSOR, token)]
    if rows and has_prev:
        first = rows[0]
        token = encode_cursor([first._mapping[f"k{i}"] for i in range(len(kcols))], first.pk, "p")
        out.prev_params = _with_count(base_params, count) + [(CURSOR, token)]

    if q.total == "accurate" or (q.total == "estimate" and (q.cursor is not None or more)):
        out.total = _count(conn, where, r)
    elif q.cursor is None and not more:
        out.total = len(rows)  # known for free

    matches = [(row.pk, row.res_type, row.res_id, row.body) for row in rows]
    included = _includes(conn, q, matches) if q.includes else []
    out.matches = [(t, i, _subset(b, t, q)) for _, t, i, b in matches]
    out.includes = [(t, i, _subset(b, t, q, include=True)) for _, t, i, b in included]
    return out


def _with_count(params: list[tuple[str, str]], count: int) -> list[tuple[str, str]]:
    return [(n, v) for n, v in params if n != "_count"] + [("_count", str(count))]


def _count(conn: sa.Connection, where: list, r: sa.FromClause) -> int:
    return conn.execute(sa.select(sa.func.count()).select_from(r).where(*where)).scalar_one()


# ----------------------------------------------------------------------------- keyset paging

def _order(kcols, pk, *, forward: bool) -> list:
    out = []
    for col, desc in kcols:
        if forward:
            out.append((col.desc() if desc else col.asc()).nulls_last())
        else:
            out.append((col.asc() if desc else col.desc()).nulls_first())
    out.append(pk.asc() if forward else pk.desc())
    return out


def _keyset(kcols, values, pk, last_pk, *, after: bool) -> sa.ColumnElement:
    """Rows strictly after (or before) the cursor in the forward order (NULLs last)."""
    ors, eqs = [], []
    for (col, desc), v in zip(kcols, values):
        if after:
            if v is None:
                step = sa.false()
            else:
                step = sa.or_((col < v) if desc else (col > v), col.is_(None))
        else:
            step = col.is_not(None) if v is None else ((col > v) if desc else (col < v))
        ors.append(sa.and_(*eqs, step))
        eqs.append(col.is_(None) if v is None else col == v)
    ors.append(sa.and_(*eqs, pk > last_pk if after else pk < last_pk))
    return sa.or_(*ors)


# ----------------------------------------------------------------------------- includes

def _includes(conn: sa.Connection, q: SearchQuery, matches: list) -> list:
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
            found = _reverse(conn, spec, current) if spec.reverse else _forward(conn, spec, current)
            for row in found:
                key = (row[1], row[2])
                if key not in seen:
                    seen.add(key)
                    new.append(row)
        result.extend(new)
        if len(result) >= MAX_INCLUDES:
            break
        current = new
    return result[:MAX_INCLUDES]


def _forward(conn: sa.Connection, spec: IncludeSpec, sources: list) -> list:
    pks = [pk for pk, t, _, _ in sources if spec.source_type in ("*", t)]
    if not pks:
        return []
    ref = idx_reference.alias("ref")
    t = resources.alias("t")
    stmt = (
        sa.select(t.c.pk, t.c.res_type, t.c.res_id, t.c.body)
        .select_from(ref.join(t, sa.and_(t.c.res_type == ref.c.target_type, t.c.res_id == ref.c.target_id)))
        .where(ref.c.resource_pk.in_(pks), t.c.deleted == sa.false())
        .distinct()
    )
    if spec.param != "*":
        stmt = stmt.where(ref.c.param == spec.param)
    if spec.target_type:
        stmt = stmt.where(t.c.res_type == spec.target_type)
    return [tuple(row) for row in conn.execute(stmt)]


def _reverse(conn: sa.Connection, spec: IncludeSpec, targets: list) -> list:
    wanted = {(t, i) for _, t, i, _ in targets}
    if spec.target_type:
        wanted = {w for w in wanted if w[0] == spec.target_type}
    if not wanted:
        return []
    ref = idx_reference.alias("ref")
    s = resources.alias("s")
    stmt = (
        sa.select(s.c.pk, s.c.res_type, s.c.res_id, s.c.body, ref.c.target_type, ref.c.target_id)
        .select_from(ref.join(s, s.c.pk == ref.c.resource_pk))
        .where(ref.c.target_id.in_(sorted({i for _, i in wanted})),
               ref.c.target_type.in_(sorted({t for t, _ in wanted})),
               s.c.deleted == sa.false())
    )
    if spec.source_type != "*":
        stmt = stmt.where(s.c.res_type == spec.source_type)
    if spec.param != "*":
        stmt = stmt.where(ref.c.param == spec.param)
    out, seen = [], set()
    for row in conn.execute(stmt):
        if (row.target_type, row.target_id) in wanted and row.pk not in seen:
            seen.add(row.pk)
            out.append((row.pk, row.res_type, row.res_id, row.body))
    return out


# ----------------------------------------------------------------------------- _summary / _elements

def _subset(body: bytes, res_type: str, q: SearchQuery, include: bool = False) -> bytes:
    """Apply ``_summary`` / ``_elements`` to stored bytes; untouched bytes otherwise."""
    mode = q.summary
    if (mode in (None, "false") and not q.elements) or (include and q.elements and mode in (None, "false")):
        return body
    doc = orjson.loads(body)
    info = summary_info(res_type)
    always = {"resourceType", "id", "meta"} | set(info["mandatory"])
    if mode == "data":
        doc.pop("text", None)
    else:
        if mode == "true":
            keep = always | set(info["summary"])
        elif mode == "text":
            keep = always | {"text"}
        else:
            keep = always | set(q.elements or ())
        choice = set(info["choice"]) & keep
        doc = {k: v for k, v in doc.items() if _keep(k, keep, choice)}
    meta = dict(doc.get("meta") or {})
    tags = list(meta.get("tag") or [])
    if not any(t.get("code") == "SUBSETTED" and t.get("system") == SUBSETTED["system"] for t in tags):
        tags.append(SUBSETTED)
    meta["tag"] = tags
    doc["meta"] = meta
    return orjson.dumps(doc)


def _keep(key: str, keep: set[str], choice: set[str]) -> bool:
    name = key[1:] if key.startswith("_") else key
    if name in keep:
        return True
    return any(name.startswith(c) and name[len(c):][:1].isupper() for c in choice)
