"""What a native -> FHIR mapping returns: resources with their upsert keys, plus warnings.

Resources that refer to each other use ``urn:uuid:`` full URLs derived (UUID v5) from their upsert
key, so the same native payload always yields byte-identical output and a transaction Bundle built from
it resolves the references. ``match`` is the identifier the server should upsert on
(``PUT Type?identifier=system|value``) to make an import idempotent.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from fhir_server.errors import Issue


@dataclass(frozen=True, slots=True)
class Mapped:
    resource: dict[str, Any]
    full_url: str
    #: (identifier system, value) the server upserts on.
    match: tuple[str, str]
    #: "update" (conditional update, the record's content wins) or "create" (If-None-Exist: only create
    #: reference data such as provider Organizations when missing).
    mode: str = "update"

    @property
    def resource_type(self) -> str:
        return self.resource["resourceType"]

    @property
    def query(self) -> str:
        """The search that finds this resource, percent-encoded: ``identifier=https%3A%2F%2F...%7C3204...``."""
        system, value = self.match
        return "identifier=" + quote(f"{system}|{value}", safe="")

    @property
    def search(self) -> str:
        """The conditional URL, e.g. ``Patient?identifier=https%3A%2F%2Ffhir.kemkes.go.id%2Fid%2Fnik%7C3204...``."""
        return f"{self.resource_type}?{self.query}"


@dataclass(slots=True)
class MappingResult:
    entries: list[Mapped] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)

    @property
    def resources(self) -> list[dict[str, Any]]:
        return [e.resource for e in self.entries]

    def of_type(self, resource_type: str) -> list[dict[str, Any]]:
        return [e.resource for e in self.entries if e.resource_type == resource_type]

    def first(self, resource_type: str) -> dict[str, Any]:
        found = self.of_type(resource_type)
        if not found:
            raise LookupError(resource_type)
        return found[0]

    def add(self, resource: dict[str, Any], match: tuple[str, str], mode: str = "update") -> str:
        """Add a resource unless one with the same key is already there; returns its full URL."""
        url = full_url(resource["resourceType"], *match)
        if all(e.full_url != url for e in self.entries):
            self.entries.append(Mapped(resource, url, match, mode))
        return url

    def transaction_entries(self) -> list[dict[str, Any]]:
        """Bundle.entry dicts for a transaction: conditional PUT (update) or POST with ifNoneExist (create).

        Identifier values minted by the mappings contain no ``|``, so the token search is unambiguous.
        """
        out = []
        for e in self.entries:
            if e.mode == "create":
                request = {"method": "POST", "url": e.resource_type, "ifNoneExist": e.query}
            else:
                request = {"method": "PUT", "url": e.search}
            out.append({"fullUrl": e.full_url, "resource": e.resource, "request": request})
        return out


_NAMESPACE = uuid.UUID("6f1c0a52-3d3e-5b8e-9a57-2f3c9b0d4e11")


def full_url(resource_type: str, system: str, value: str) -> str:
    """The deterministic ``urn:uuid:`` of the resource with this upsert key."""
    return "urn:uuid:" + str(uuid.uuid5(_NAMESPACE, f"{resource_type}|{system}|{value}"))
