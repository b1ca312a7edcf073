"""The FHIR R4 (4.0.1) resource types this server accepts.

Taken from the official R4 StructureDefinitions (concrete resources only: no
``Resource`` or ``DomainResource``). R4B/R5-only types such as SubscriptionTopic,
Citation or Ingredient are not in it.
"""

from __future__ import annotations

from fhir_server.model.definitions import load_definitions

R4_RESOURCE_TYPES: frozenset[str] = frozenset(load_definitions()["resourceTypes"])


def is_r4_resource_type(name: object) -> bool:
    """True when ``name`` is a concrete FHIR R4 resource type such as ``"Patient"``."""
    return isinstance(name, str) and name in R4_RESOURCE_TYPES
