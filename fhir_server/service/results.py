"""Transport-free results of service calls (the HTTP layer turns them into responses)."""

from __future__ import annotations

from dataclasses import dataclass, field

from fhir_server.errors import Issue


@dataclass(frozen=True, slots=True)
class Stored:
    """One stored version of a resource: what reads, writes and history hand back."""

    res_type: str
    res_id: str
    version: int
    updated_us: int
    body: bytes | None
    deleted: bool = False

    @property
    def etag(self) -> str:
        return f'W/"{self.version}"'

    @property
    def location(self) -> str:
        return f"{self.res_type}/{self.res_id}/_history/{self.version}"


@dataclass(frozen=True, slots=True)
class WriteResult:
    stored: Stored
    #: 201 created, 200 updated (or unchanged), 204 deleted / nothing to delete
    status: int
    issues: list[Issue] = field(default_factory=list)
    #: the row's primary key (internal: search index, conditional-create guard)
    pk: int | None = None
