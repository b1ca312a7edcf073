"""Patient/[id]/$everything and Encounter/[id]/$everything.

The compartment comes from the official CompartmentDefinitions (the resource
types and the reference parameters that put a resource in it). One indexed
query over the reference index finds every member; pages are keyset pages on
the row key, so they walk the compartment exactly once. ``start``/``end``
filter members that have a ``date`` search value (members without one stay),
``_since`` filters by last update, ``_type`` restricts the types.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlencode

from fhir_server import paging
from fhir_server.errors import FhirError
from fhir_server.operations.registry import Operation, OperationCall, OperationResult, parameter_values, register
from fhir_server.resource_types import is_resource_type
from fhir_server.search.compartment import FOCAL, CompartmentPage
from fhir_server.search.parameters import compartments
from fhir_server.service import bundles
from fhir_server.timeutil import datetime_range

if TYPE_CHECKING:  # pragma: no cover
    from fhir_server.service.context import Services

CURSOR = "_cursor"


def _range(call: OperationCall, name: str) -> tuple[int, int] | None:
    value = next(iter(parameter_values(call, name)), None)
    if value is None:
        return None
    try:
        return datetime_range(str(value))
    except ValueError as exc:
        raise FhirError.of(400, "invalid", f"{name}: {exc}") from None


def everything(state: Services, call: OperationCall) -> OperationResult:
    compartment, focal_id = call.res_type or "", call.res_id or ""
    focal = state.resources.read(compartment, focal_id)  # 404 / 410 first
    # types the caller may not read are left out of the query itself (full pages, nothing leaves)
    members = {t: p for t, p in compartments()[compartment].items() if p != [FOCAL] and call.principal.readable(t)}

    types = {t.strip() for v in parameter_values(call, "_type") for t in str(v).split(",") if t.strip()}
    unknown = [t for t in types if not is_resource_type(t)]
    if unknown:
        raise FhirError.of(400, "invalid", f"_type: unknown resource type(s) {', '.join(unknown)}")
    if types:
        members = {t: p for t, p in members.items() if t in types}
    count_raw = next(iter(parameter_values(call, "_count")), None)
    count = paging.parse_count(str(count_raw), state.max_count) if count_raw is not None else state.default_count
    since = _range(call, "_since")
    start, end = _range(call, "start"), _range(call, "end")
    cursor = next((v for k, v in call.query if k == CURSOR), None)
    after = paging.decode_ints(cursor, CURSOR, 0).pk if cursor else None

    member_rows = state.search.compartment_rows(
        CompartmentPage(
            compartment,
            focal_id,
            members,
            count,
            after_pk=after,
            since=since,
            start=start,
            end=end,
        )
    )
    more = len(member_rows) > count
    member_rows = member_rows[:count]

    entries = []
    include_focal = after is None and (not types or compartment in types)
    if include_focal and focal.body is not None:
        entries.append(bundles.entry(f"{call.base}/{compartment}/{focal_id}", focal.body, search={"mode": "match"}))
    for row in member_rows:
        entries.append(bundles.entry(f"{call.base}/{row.res_type}/{row.res_id}", row.body, search={"mode": "match"}))
    url = f"{call.base}/{compartment}/{focal_id}/$everything"
    kept = [(k, v) for k, v in call.query if k != CURSOR]
    links = [("self", url + ("?" + urlencode(call.query) if call.query else ""))]
    if more:
        token = paging.encode([], member_rows[-1].pk)
        links.append(("next", url + "?" + urlencode([*kept, (CURSOR, token)])))
    return OperationResult(bundles.bundle("searchset", entries, links=links))


register(Operation("everything", "Patient-everything", everything, ("Patient",), instance=True))
register(Operation("everything", "Encounter-everything", everything, ("Encounter",), instance=True))
