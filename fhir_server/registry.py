"""One registry of what the server does: resource types, interactions, operations.

The routes and the CapabilityStatement are both generated from it, so the
CapabilityStatement cannot claim what the routes do not do.
"""

from __future__ import annotations

from fhir_server.model.types import R4_RESOURCE_TYPES

#: type-level and instance-level interactions every resource type supports
TYPE_INTERACTIONS: tuple[str, ...] = (
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
)
SYSTEM_INTERACTIONS: tuple[str, ...] = ("transaction", "batch", "history-system", "search-system")

RESOURCE_TYPES: tuple[str, ...] = tuple(sorted(R4_RESOURCE_TYPES))
_TYPE_SET = frozenset(RESOURCE_TYPES)


def is_resource_type(name: str) -> bool:
    return name in _TYPE_SET
