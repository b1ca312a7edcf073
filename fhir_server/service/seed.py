"""Conformance resources the server itself provides, stored idempotently at start-up/migrate.

Storing them makes them readable and searchable like any resource; an unchanged
definition is a no-op update, so restarts do not add versions.
"""

from __future__ import annotations

import copy

from fhir_server.operations import catalog  # noqa: F401  (registers every operation)
from fhir_server.operations.registry import OPERATIONS, definition
from fhir_server.service.resources import ResourceService


def seed_conformance(resources: ResourceService) -> list[str]:
    """Upsert the OperationDefinitions of the registered operations; returns their ids."""
    ids = []
    for stem in sorted({op.definition for op in OPERATIONS}):
        resource = copy.deepcopy(definition(stem))
        resources.update("OperationDefinition", resource["id"], resource)
        ids.append(resource["id"])
    return ids
