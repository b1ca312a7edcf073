"""Server time: epoch microseconds inside, FHIR instants and HTTP dates outside."""

from __future__ import annotations

import calendar
import re
import time
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_DATETIME = re.compile(
    r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


def now_us() -> int:
    return time.time_ns() // 1000


def to_instant(us: int) -> str:
    """``2026-11-29T12:00:00.123456+00:00``: a FHIR instant in the UTC offset form SATUSEHAT uses."""
    dt = _EPOCH + timedelta(microseconds=us)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%f") + "+00:00"


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
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp()) * 1_000_000


def datetime_range(value: str) -> tuple[int, int]:
    """The [first, last] microsecond covered by a FHIR date/dateTime/instant.

    ``2020`` covers the whole year, ``2020-03-01T10:00`` the whole minute.
    Values without a time zone are taken as UTC. Raises ValueError when the
    value is not a FHIR date/dateTime.
    """
    m = _DATETIME.match(value.strip())
    if not m:
        raise ValueError(f"'{value}' is not a FHIR date or dateTime")
    year, month, day, hour, minute, second, frac, tz = m.groups()
    y = int(year)
    mo = int(month) if month else 1
    d = int(day) if day else 1
    h = int(hour) if hour else 0
    mi = int(minute) if minute else 0
    s = int(second) if second else 0
    micro = int((frac[1:] + "000000")[:6]) if frac else 0
    try:
        start = datetime(y, mo, d, h, mi, s, micro, tzinfo=timezone.utc)
    except ValueError as exc:
        raise ValueError(f"'{value}' is not a valid date: {exc}") from None
    if tz and tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        start -= sign * timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6]))
    if month is None:
        end = start.replace(year=y + 1)
    elif day is None:
        end = start + timedelta(days=calendar.monthrange(y, mo)[1])
    elif hour is None:
        end = start + timedelta(days=1)
    elif second is None:
        end = start + timedelta(minutes=1)
    elif frac is None:
        end = start + timedelta(seconds=1)
    else:
        end = start + timedelta(microseconds=10 ** (6 - min(len(frac) - 1, 6)))
    lo = (start - _EPOCH) // timedelta(microseconds=1)
    hi = (end - _EPOCH) // timedelta(microseconds=1) - 1
    return lo, hi
