"""Patient/[id]/$everything and Encounter/[id]/$everything.

The compartment comes from the official CompartmentDefinitions (the resource
types and the reference parameters that put a resource in it). One indexed
query over the reference index finds every member; pages are keyset pages on
the row key, so they walk the compartment exactly once. ``start``/``end``
filter members that have a ``date`` search value (members without one stay),
``_since`` filters by last update, ``_type`` restricts the types.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING
from urllib.parse import urlencode

import sqlalchemy as sa

from fhir_server.errors import FhirError
from fhir_server.operations.registry import Operation, OperationCall, OperationResult, parameter_values, register
from fhir_server.registry import is_resource_type
from fhir_server.search.registry import compartments
from fhir_server.service import bundles
from fhir_server.storage.index_tables import idx_date, idx_reference
from fhir_server.storage.tables import resources
from fhir_server.timeutil import datetime_range

if TYPE_CHECKING:  # pragma: no cover
    from fhir_server.app import ServerState

CURSOR = "_cursor"


def _cursor(token: str) -> int:
    try:
        pk = int(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode())
        if not 0 <= pk < 2**62:
            raise ValueError("out of range")
        return pk
    except (ValueError, UnicodeDecodeError):
        raise FhirError.of(400, "invalid", f"{CURSOR} is not a page token this server issued") from None


def _range(call: OperationCall, name: str) -> tuple[int, int] | None:
    value = next(iter(parameter_values(call, name)), None)
    if value is None:
        return None
    try:
        return datetime_range(str(value))
    except ValueError as exc:
        raise FhirError.of(400, "invalid", f"{name}: {exc}") from None


def everything(state: "ServerState", call: OperationCall) -> OperationResult:
    compartment, focal_id = call.res_type or "", call.res_id or ""
    focal = state.resources.read(compartment, focal_id)  # 404 / 410 first
    members = {t: p for t, p in compartments()[compartment].items() if p != ["{def}"]}

    types = {t.strip() for v in parameter_values(call, "_type") for t in str(v).split(",") if t.strip()}
    unknown = [t for t in types if not is_resource_type(t)]
    if unknown:
        raise FhirError.of(400, "invalid", f"_type: unknown resource type(s) {', '.join(unknown)}")
    if types:
        members = {t: p for t, p in members.items() if t in types}
    count_raw = next(iter(parameter_values(call, "_count")), None)
    if count_raw is not None and (not str(count_raw).isdigit() or len(str(count_raw)) > 9):
        raise FhirError.of(400, "invalid", "_count must be a non-negative integer below 10^9")
    count = min(int(count_raw), state.settings.max_count) if count_raw is not None else state.settings.default_count
    since = _range(call, "_since")
    start, end = _range(call, "start"), _range(call, "end")
    cursor = next((v for k, v in call.query if k == CURSOR), None)
    after = _cursor(cursor) if cursor else None

    r, ref = resources, idx_reference
    where = [r.c.deleted == sa.false()]
    if since:
        where.append(r.c.updated_us >= since[0])
    if start or end:
        lo = start[0] if start else -(2**62)
        hi = end[1] if end else 2**62
        dated = sa.select(idx_date.c.resource_pk).where(idx_date.c.resource_pk == r.c.pk, idx_date.c.param == "date")
        overlapping = dated.where(idx_date.c.hi >= lo, idx_date.c.lo <= hi)
        where.append(sa.or_(~dated.exists(), overlapping.exists()))
    if after is not None:
        where.append(r.c.pk > after)
    member_rows = []
    if members:
        pairs = sa.or_(*(sa.and_(r.c.res_type == t, ref.c.param.in_(params)) for t, params in members.items()))
        stmt = (
            sa.select(r.c.pk, r.c.res_type, r.c.res_id, r.c.body)
            .select_from(ref.join(r, r.c.pk == ref.c.resource_pk))
            .where(ref.c.target_type == compartment, ref.c.target_id == focal_id, pairs, *where)
            .distinct()
            .order_by(r.c.pk)
            .limit(count + 1)
        )
        with state.db.read() as conn:
            member_rows = list(conn.execute(stmt))
    more = len(member_rows) > count
    member_rows = member_rows[:count]

    entries = []
    include_focal = after is None and (not types or compartment in types)
    if include_focal and focal.body is not None:
        entries.append(bundles.entry(f"{call.base}/{compartment}/{focal_id}", focal.body, search={"mode": "match"}))
    for row in member_rows:
        if not call.readable(row.res_type):
            continue  # types outside the caller's scopes are left out
        entries.append(bundles.entry(f"{call.base}/{row.res_type}/{row.res_id}", row.body, search={"mode": "match"}))
    url = f"{call.base}/{compartment}/{focal_id}/$everything"
    kept = [(k, v) for k, v in call.query if k != CURSOR]
    links = [("self", url + ("?" + urlencode(call.query) if call.query else ""))]
    if more:
        token = base64.urlsafe_b64encode(str(member_rows[-1].pk).encode()).decode().rstrip("=")
        links.append(("next", url + "?" + urlencode(kept + [(CURSOR, token)])))
    return OperationResult(bundles.bundle("searchset", entries, links=links))


register(Operation("everything", "Patient-everything", everything, ("Patient",), instance=True))
register(Operation("everything", "Encounter-everything", everything, ("Encounter",), instance=True))
