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

#: types the server writes itself: clients may only read and search them (docs/audit.md)
SERVER_OWNED: dict[str, tuple[str, ...]] = {"AuditEvent": ("read", "search-type")}


#: types with rules of their own that PATCH would bypass (docs/subscriptions.md: secrets, status)
NO_PATCH: frozenset[str] = frozenset({"Subscription"})


def interactions_for(res_type: str) -> tuple[str, ...]:
    if res_type in NO_PATCH:
        return tuple(x for x in TYPE_INTERACTIONS if x != "patch")
    return SERVER_OWNED.get(res_type, TYPE_INTERACTIONS)


def is_resource_type(name: str) -> bool:
    return name in _TYPE_SET
