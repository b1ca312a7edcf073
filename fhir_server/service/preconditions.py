"""``If-Match`` (RFC 9110 §13.1.1; FHIR R4 http.html#concurrency), read in one place for every
write that takes it: update, patch, delete, conditional update, and a Bundle entry's
``request.ifMatch`` (they all reach ``ResourceService`` with the raw value)."""

from __future__ import annotations

from dataclasses import dataclass

from fhir_server.errors import FhirError


def is_version(text: str) -> bool:
    """A version id this server could have issued: 1 to 9 digits."""
    return text.isdigit() and len(text) <= 9


def parse_version(value: str) -> int:
    """A version id or an ETag (``W/"3"`` or ``"3"``) as an int; FhirError 400 otherwise."""
    text = value.strip()
    if text.startswith("W/"):
        text = text[2:]
    text = text.strip('"')
    if not is_version(text):
        raise FhirError.of(400, "invalid", f"'{value[:40]}' is not a version id or ETag like W/\"3\"")
    return int(text)


@dataclass(frozen=True, slots=True)
class IfMatch:
    """``*`` (``versions`` None: any current resource) or a list of ETags (any one naming the
    current version). Weak and strong forms compare alike, as for If-None-Match: a version is
    both (``Stored.etag``)."""

    versions: frozenset[int] | None

    def holds(self, version: int | None, deleted: bool = False) -> bool:
        """Whether the precondition holds for the current version (None: no resource)."""
        if self.versions is None:
            return version is not None and not deleted
        return version in self.versions

    def expected(self) -> str:
        """What the precondition asked for, for a 412's diagnostics."""
        if self.versions is None:
            return "a current version (*)"
        listed = sorted(self.versions)
        return f"version {listed[0]}" if len(listed) == 1 else f"one of versions {', '.join(map(str, listed))}"


def parse_if_match(value: str) -> IfMatch:
    """``If-Match: *`` or ``If-Match: W/"1", W/"2"`` (empty list elements ignored, RFC 9110
    §5.6.1.2); 400 for anything else, ``*`` within a list included."""
    if not isinstance(value, str):  # a Bundle entry's ifMatch that is no JSON string
        raise FhirError.of(400, "invalid", 'If-Match must be * or a list of ETags like W/"3"')
    items = [item.strip() for item in value.split(",")]
    items = [item for item in items if item]
    if items == ["*"]:
        return IfMatch(None)
    if not items or "*" in items:
        raise FhirError.of(400, "invalid", f"If-Match '{value[:40]}' is neither * nor a list of ETags like W/\"3\"")
    return IfMatch(frozenset(parse_version(item) for item in items))
