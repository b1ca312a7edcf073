"""Value normalisation shared by index extraction and query parsing.

Dates become inclusive ``[lo, hi]`` ranges in microseconds since the epoch
(UTC). A date or date-time without a timezone is read as UTC (the server has
no better knowledge of the writer's zone; SATUSEHAT always sends one).
"""

from __future__ import annotations

import calendar
import re
import unicodedata
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import overload

MIN_US = -62135596800 * 1_000_000  # 0001-01-01T00:00:00Z
MAX_US = 253402300799 * 1_000_000 + 999_999  # 9999-12-31T23:59:59.999999Z
# Longer strings are cut (UTF-8 bytes): a PostgreSQL B-tree entry must stay under ~2700
# bytes, and the widest index holds two such columns.
MAX_INDEXED_BYTES = 1000

_DATE_RE = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.(?P<f>\d+))?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)
#: a time whose '+' zone a URL's decoding turned into a space (``T20:47:12 07:00``): nothing else
#: can have put a space there, so the '+' is put back (a client writing WIB, WITA or WIT offsets
#: into a URL unencoded; search.html has the '+' percent-encoded)
_DECODED_PLUS_ZONE = re.compile(r"(T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (\d{2}:\d{2})$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_DAY = date(1970, 1, 1).toordinal()
_DAY_US = 86_400_000_000
_TYPE_RE = re.compile(r"^[A-Z][A-Za-z]{0,63}$")
_ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def _us(dt: datetime) -> int:
    delta = dt - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def date_range(value: str) -> tuple[int, int] | None:
    """``'2020-03'`` -> (first µs of March 2020, last µs of March 2020), or None if malformed.
    Every date read from a URL comes here (search values, ``_lastUpdated``, ``_since``, ``_at``),
    so a '+' zone decoded to a space is read as the '+' it was (``_DECODED_PLUS_ZONE``)."""
    text = value.strip() if isinstance(value, str) else ""  # extraction may pass what a JSON value holds
    if " " in text:
        text = _DECODED_PLUS_ZONE.sub(r"\1+\2", text)
    m = _DATE_RE.match(text)
    if not m:
        return None
    try:
        y = int(m["y"])
        if m["m"] is None:
            return _us(datetime(y, 1, 1, tzinfo=UTC)), _us(datetime(y, 12, 31, 23, 59, 59, 999999, tzinfo=UTC))
        mo = int(m["m"])
        if m["d"] is None:
            last = calendar.monthrange(y, mo)[1]
            return (_us(datetime(y, mo, 1, tzinfo=UTC)), _us(datetime(y, mo, last, 23, 59, 59, 999999, tzinfo=UTC)))
        # days and seconds counted as integers (date() checks the day of the month): a third of
        # the cost of building aware datetimes and subtracting, on every date an index row holds
        days = date(y, mo, int(m["d"])).toordinal() - _EPOCH_DAY
        if m["H"] is None:
            return days * _DAY_US, days * _DAY_US + _DAY_US - 1
        hh, mm = int(m["H"]), int(m["M"])
        ss = int(m["S"]) if m["S"] is not None else 0
        if hh > 23 or mm > 59 or ss > 59:
            return None
        offset = 0
        if (tz := m["tz"]) and tz != "Z":
            offset = int(tz[1:3]) * 60 + int(tz[4:6])  # minutes east of UTC
            if offset >= 1440:  # a zone is less than a day from UTC
                return None
            if tz[0] == "-":
                offset = -offset
        lo = ((days * 86_400 + hh * 3_600 + mm * 60 + ss) - offset * 60) * 1_000_000
        if m["S"] is None:
            width = 60_000_000
        elif (frac := m["f"]) is None:
            width = 1_000_000
        else:
            frac = frac[:6]
            lo += int(frac.ljust(6, "0"))
            width = 10 ** (6 - len(frac))
        return lo, lo + width - 1
    except ValueError:
        return None


def normalize_string(value: str) -> str:
    """Lower-case, accents stripped (NFKD), whitespace collapsed; cut to the indexed length."""
    if "\x00" in value:
        value = value.replace("\x00", "")
    if not value.isascii():
        decomposed = unicodedata.normalize("NFKD", value)
        value = "".join(c for c in decomposed if not unicodedata.combining(c))
    return cut(" ".join(value.casefold().split()))


@overload
def cut(value: str) -> str: ...


@overload
def cut(value: str | None) -> str | None: ...


def cut(value: str | None) -> str | None:
    """Cut to the indexed length; NUL characters are dropped (PostgreSQL text cannot hold them)."""
    if value is None:
        return None
    if "\x00" in value:
        value = value.replace("\x00", "")
    if len(value) > MAX_INDEXED_BYTES // 4:
        raw = value.encode()
        if len(raw) > MAX_INDEXED_BYTES:
            value = raw[:MAX_INDEXED_BYTES].decode("utf-8", "ignore")
    return value


def parse_decimal(value: str) -> Decimal | None:
    try:
        d = Decimal(value.strip())
    except (InvalidOperation, AttributeError):
        return None
    return d if d.is_finite() else None


def precision_range(d: Decimal) -> tuple[float, float]:
    """Implicit range of a decimal: ``100`` -> [99.5, 100.5], ``1.50`` -> [1.495, 1.505]."""
    exp = d.as_tuple().exponent
    half = Decimal(5).scaleb(exp - 1) if isinstance(exp, int) else Decimal(0)
    return float(d - half), float(d + half)


def parse_reference(ref: str) -> tuple[str | None, str | None, str | None, str | None]:
    """Split a Reference.reference into (type, id, version, absolute url).

    Relative ``Type/id[/_history/v]`` gives type/id/version; absolute URLs and
    URNs give only ``url`` (they point outside this server as far as the index
    knows); contained references (``#x``) give nothing.
    """
    if not ref or ref.startswith("#"):
        return None, None, None, None
    if "://" in ref or ref.startswith("urn:"):
        return None, None, None, ref
    parts = ref.split("/")
    if len(parts) == 2 and _TYPE_RE.match(parts[0]) and _ID_RE.match(parts[1]):
        return parts[0], parts[1], None, None
    if len(parts) == 4 and parts[2] == "_history" and _TYPE_RE.match(parts[0]) and _ID_RE.match(parts[1]) and _ID_RE.match(parts[3]):
        return parts[0], parts[1], parts[3], None
    return None, None, None, ref


def reference_type(ref: str | None) -> str | None:
    """The resource type a reference string points at (relative or absolute), for resolve()."""
    if not ref or ref.startswith("#") or ref.startswith("urn:"):
        return None
    parts = ref.split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) >= 2 and parts[-2][:1].isupper():
        return parts[-2]
    return None
