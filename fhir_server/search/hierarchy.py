"""Reference ``:below`` and ``:above``: a reference into a hierarchy of resources of one type.

``Encounter?service-provider:below=Organization/rsud`` finds the Encounters of the hospital and of
every unit below it (SATUSEHAT registers a facility's departments as Organizations ``partOf`` it);
``Encounter?location:below=Location/gedung-a`` those in any room of building A. The hierarchy is
the target type's own ``partOf`` reference (``partof`` / ``part-of`` on Location, Organization,
Encounter, CarePlan, Task, ResearchStudy ...): ``:below`` matches references to the named resource
or to any resource below it, ``:above`` to it or to any resource above it. The hierarchy is walked
in the database (a recursive query; a cycle ends the walk), as it is stored now.
"""

from __future__ import annotations

from dataclasses import dataclass

from .parameters import SearchParam, params_for
from .values import parse_reference

#: the reference parameters that make a type's hierarchy, by preference
_HIERARCHY_CODES = ("partof", "part-of")


@dataclass(frozen=True)
class HierarchyValue:
    res_type: str
    res_id: str
    #: the parameter of ``res_type`` pointing at its parent (``partof``)
    parent_param: str


def hierarchy_param(res_type: str) -> str | None:
    """The parameter by which a ``res_type`` points at its parent in a hierarchy of its own type."""
    params = params_for(res_type)
    for code in _HIERARCHY_CODES:
        p = params.get(code)
        if p is not None and p.type == "reference" and res_type in p.targets:
            return code
    return None


def parse_hierarchy_value(raw: str, p: SearchParam | None) -> HierarchyValue:
    """``Type/id`` (or an id when the parameter has one target type); ValueError naming the problem."""
    if "/" not in raw and p is not None and len(p.targets) == 1:
        raw = f"{p.targets[0]}/{raw}"
    res_type, res_id, _, url = parse_reference(raw)
    if url is not None or res_type is None or res_id is None:
        raise ValueError(f"'{raw}' is not a reference Type/id to a resource of this server")
    if p is not None and p.targets and res_type not in p.targets:
        raise ValueError(f"'{raw}': the parameter points at {', '.join(p.targets[:5])}, not {res_type}")
    parent = hierarchy_param(res_type)
    if parent is None:
        raise ValueError(f"{res_type} has no hierarchy (no partOf reference of its own type)")
    return HierarchyValue(res_type, res_id, parent)
