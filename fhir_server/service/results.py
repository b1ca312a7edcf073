"""Transport-free results of service calls (the HTTP layer turns them into responses)."""

from __future__ import annotations

from dataclasses import dataclass, field

from fhir_server.errors import Issue

#: ``Prefer: return=`` values (RFC 7240, http.html#ops; api/http.prefer lower-cases them)
REPRESENTATION, MINIMAL, OPERATION_OUTCOME = "representation", "minimal", "operationoutcome"


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


def write_outcome(stored: Stored | None, status: int, issues: list[Issue], *, deleted: bool = False) -> list[Issue]:
    """What ``Prefer: return=OperationOutcome`` answers for a write, on the routes and in a Bundle
    entry's ``response.outcome``: its warnings, else an informational issue naming what it wrote
    (or deleted: ``stored`` None or version 0 when nothing, or several resources, were)."""
    if issues:
        return issues
    if not deleted:
        assert stored is not None
        return [Issue("information", "informational", f"{stored.location} stored ({status})")]
    what = (
        f"{stored.res_type}/{stored.res_id} deleted" if stored is not None and stored.version else "Deleted (nothing, or several resources)"
    )
    return [Issue("information", "informational", what)]


def not_modified(stored: Stored, if_none_match: str | None, modified_until_us: int | None) -> bool:
    """Whether a conditional GET of ``stored`` is answered 304 (RFC 9110 §13.1.2-3; http.html#cread):
    an ``If-None-Match`` naming its ETag (weakly compared, quoted with or without ``W/``, or ``*``)
    or, without one, an ``If-Modified-Since`` whose last covered microsecond (``modified_until_us``)
    is not before its last update. The routes' headers and a Bundle entry's
    ``request.ifNoneMatch`` / ``ifModifiedSince`` alike."""
    if if_none_match is not None:
        tags = {t.strip() for t in if_none_match.split(",")}
        return "*" in tags or stored.etag in tags or stored.etag[2:] in tags
    return modified_until_us is not None and stored.updated_us <= modified_until_us
