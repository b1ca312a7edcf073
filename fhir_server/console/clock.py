"""Times as people at the facility read them: FHIR instants and dateTimes shown in the console's
time zone (``FHIR_CONSOLE_TIMEZONE``, Asia/Jakarta by default) instead of UTC. No I/O."""

from __future__ import annotations

import datetime as dt
import functools
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fhir_server.config import ConfigError


@functools.lru_cache(maxsize=8)
def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"FHIR_CONSOLE_TIMEZONE={name!r} is not an IANA time zone (e.g. Asia/Jakarta, Asia/Makassar, Asia/Jayapura)"
        ) from None


def parse(text: str) -> dt.datetime | None:
    """The moment a FHIR dateTime/instant with a time names (no zone given: UTC); None for a
    date, a partial date or anything unreadable."""
    if len(text) <= 10 or "T" not in text:
        return None
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def local(text: object, tz: dt.tzinfo, *, date_only: bool = False) -> str:
    """``2026-12-01T01:30:00Z`` -> ``2026-12-01 08:30`` in Asia/Jakarta (``date_only``: the date);
    a date or partial date is shown as it is; None/empty -> ''."""
    if not text:
        return ""
    moment = parse(str(text))
    if moment is None:
        return str(text)[:10] if date_only else str(text)
    return moment.astimezone(tz).strftime("%Y-%m-%d" if date_only else "%Y-%m-%d %H:%M")


def abbreviation(tz: dt.tzinfo) -> str:
    """WIB, WITA, WIT ... (the zone's own abbreviation now), for "times in WIB"."""
    return dt.datetime.now(tz).tzname() or str(tz)
