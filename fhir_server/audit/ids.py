"""AuditEvent ids: UUID version 7 (RFC 9562), time-ordered.

Events recorded by the server are stored without an id (``event_id`` NULL):
their id is derived from the row when it is read, ``unix_ts_ms`` from
``recorded_us`` and the 74 "random" bits holding the row's primary key (RFC
9562 lets those bits carry a counter). Writing no id saves generating one and
a unique-index insertion per event (docs/performance.md, audit). An event
given an explicit id (``AuditRecord.event_id``), and every event recorded
before migration ``0008``, keeps its stored id.
"""

from __future__ import annotations

from random import getrandbits as _getrandbits

_LOW62 = (1 << 62) - 1
_MAX_PK = (1 << 74) - 1


def _format(ms: int, bits74: int) -> str:
    v = (ms << 80) | (0x7 << 76) | ((bits74 >> 62) << 64) | (0b10 << 62) | (bits74 & _LOW62)
    h = f"{v:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def new_event_id(recorded_us: int) -> str:
    """A random UUID v7: 48 bits of Unix milliseconds, then 74 random bits (for
    standalone rows that have no primary key yet, see ``events.to_row``).
    The bits come from ``random``: event ids are identifiers, not secrets."""
    return _format(recorded_us // 1000, _getrandbits(74))


def derived_event_id(recorded_us: int, pk: int) -> str:
    """The id of a stored event without an explicit id: its milliseconds and primary key."""
    return _format(recorded_us // 1000, pk & _MAX_PK)


def parse_derived(event_id: str) -> tuple[int, int] | None:
    """(first µs of its millisecond, pk) of an id shaped like :func:`derived_event_id`, else None.

    Any UUID v7 parses (a stored random id too): the caller must also require
    ``event_id IS NULL`` and the time, which only the derived row matches.
    """
    if len(event_id) != 36:
        return None
    try:
        v = int(event_id.replace("-", ""), 16)
    except ValueError:
        return None
    ms, pk = v >> 80, (((v >> 64) & 0xFFF) << 62) | (v & _LOW62)
    # exactly our spelling (lower-case hex, hyphens in place, version 7, RFC variant)
    if pk >= 1 << 63 or _format(ms, pk) != event_id:  # no such primary key / not our spelling
        return None
    return ms * 1000, pk
