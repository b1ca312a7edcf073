"""Search criteria limited to what the caller may search.

A chain (``subject.name=...``) or a reverse chain (``_has:Observation:subject:code=...``)
selects resources by the content of *other* resources. A caller who may not search
those other types must not learn anything from them, not even which matches exist:
``_has`` on such a type and a chain whose every target is such a type are refused
with 403; a chain with several target types keeps only the ones the caller may
search (as if the others did not exist). ``_list`` reads a List, a reference ``:below`` /
``:above`` the hierarchy of its target type: search of those is needed.
"""

from __future__ import annotations

from collections.abc import Callable

from fhir_server.errors import FhirError, error

from .hierarchy import HierarchyValue
from .parse import Criterion


def _forbidden(text: str) -> FhirError:
    return FhirError(403, [error("forbidden", text)])


def restrict_criteria(criteria: list[Criterion], searchable: Callable[[str], bool]) -> None:
    """Narrow chains to searchable targets in place; 403 when a chain or ``_has`` has none."""
    for c in criteria:
        if c.code == "_list" and c.param is None and not searchable("List"):
            raise _forbidden("_list reads a List, which the access token may not search")
        if c.ptype == "reference" and c.modifier in ("above", "below"):
            for kind in {v.res_type for v in c.values if isinstance(v, HierarchyValue)}:
                if not searchable(kind):
                    raise _forbidden(f"'{c.code}:{c.modifier}' walks the {kind} hierarchy, which the access token may not search")
        if c.has is not None:
            if c.has_type is None or not searchable(c.has_type):
                raise _forbidden(f"_has:{c.has_type} needs search access to {c.has_type}, which the access token lacks")
            restrict_criteria([c.has], searchable)
        if c.chain is not None:
            allowed = tuple(t for t in c.chain_types if searchable(t))
            if not allowed:
                raise _forbidden(f"The chain on '{c.code}' searches {', '.join(c.chain_types)}, which the access token may not search")
            c.chain_types = allowed
            restrict_criteria([c.chain], searchable)
