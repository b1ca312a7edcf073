"""Server time: epoch microseconds inside, FHIR instants and HTTP dates outside."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def now_us() -> int:
    return time.time_ns() // 1000


#: (second, its "YYYY-MM-DDTHH:MM:SS"): the instants of one second share it (strftime cost ~2 µs,
#: on every write's meta.lastUpdated and every Bundle); replaced whole, so safe across threads
_SECOND: tuple[int, str] = (0, "1970-01-01T00:00:00")


def to_instant(us: int) -> str:
    """``2026-11-29T12:00:00.123456+00:00``: a FHIR instant in the UTC offset form SATUSEHAT uses."""
    global _SECOND
    second, fraction = divmod(us, 1_000_000)
    cached_second, text = _SECOND
    if second != cached_second:
        dt = _EPOCH + timedelta(seconds=second)
        text = f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}"
        _SECOND = (second, text)
    return f"{text}.{fraction:06d}+00:00"


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def to_http_date(us: int) -> str:
    """RFC 9110 IMF-fixdate, e.g. ``Sun, 29 Nov 2026 12:13:43 GMT`` (locale-independent)."""
    t = time.gmtime(us // 1_000_000)
    return f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"


def parse_http_date(value: str) -> int | None:
    """Seconds-resolution epoch microseconds of an HTTP date, or None if unparseable."""
    try:
        dt = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp()) * 1_000_000


def datetime_range(value: str) -> tuple[int, int]:
    """The [first, last] microsecond covered by a FHIR date/dateTime/instant.

    ``2020`` covers the whole year, ``2020-03-01T10:00`` the whole minute; values
    without a time zone are taken as UTC. One implementation with search
    (:func:`fhir_server.search.values.date_range`). Raises ValueError when the
    value is not a valid FHIR date or dateTime.
    """
    from fhir_server.search.values import date_range

    found = date_range(value)
    if found is None:
        raise ValueError(f"'{value}' is not a valid FHIR date or dateTime")
    return found
