"""Conformance and terminology resources the server provides, stored idempotently at start-up/migrate.

Storing them makes them readable and searchable like any resource; an unchanged
definition is a no-op update, so restarts do not add versions. All of them in one write
transaction: one each (541) made a fresh PostgreSQL server's first start wait for 541 WAL
flushes (7-30 s measured on a loaded machine), and every restart take the write lock 541 times.
"""

from __future__ import annotations

import copy
import logging

from fhir_server.errors import FhirError
from fhir_server.operations import catalog  # noqa: F401  (registers every operation)
from fhir_server.operations.registry import OPERATIONS, definition
from fhir_server.search.parameters import custom_search_parameters
from fhir_server.service.resources import ResourceService
from terminology.engine import default_engine

log = logging.getLogger("fhir_server")


def seed_conformance(resources: ResourceService) -> list[str]:
    """Upsert the OperationDefinitions of the registered operations and the packaged
    CodeSystems, ValueSets and ConceptMaps (Indonesian lists, Kemendagri regions);
    returns the ``Type/id`` of each."""
    stored = []
    with resources.db.write() as conn:
        for stem in sorted({op.definition for op in OPERATIONS}):
            resource = copy.deepcopy(definition(stem))
            resources.update_in(conn, "OperationDefinition", resource["id"], resource)
            stored.append(f"OperationDefinition/{resource['id']}")
        for resource in custom_search_parameters():
            resources.update_in(conn, "SearchParameter", resource["id"], resource)
            stored.append(f"SearchParameter/{resource['id']}")
        for resource in default_engine().registry.all_resources():
            resource = copy.deepcopy(resource)
            try:
                # a refused resource raises before anything of it is written: the rest go on
                resources.update_in(conn, resource["resourceType"], resource["id"], resource)
            except FhirError as exc:  # packaged content must never stop the server from starting
                log.error("not storing %s/%s: %s", resource["resourceType"], resource.get("id"), exc)
                continue
            stored.append(f"{resource['resourceType']}/{resource['id']}")
    return stored
