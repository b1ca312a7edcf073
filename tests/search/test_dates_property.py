"""Date prefix semantics against a plain reference implementation (hypothesis)."""

from __future__ import annotations

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fhir_server.search.parse import parse_date_value
from fhir_server.search.sql import SqlBuilder
from fhir_server.search.values import date_range


def reference(prefix: str, t: tuple[int, int], s: tuple[int, int]) -> bool:
    """http://hl7.org/fhir/R4/search.html#prefix, written out literally."""
    (lo, hi), (slo, shi) = t, s
    contains = slo <= lo and hi <= shi
    if prefix == "eq":
        return contains
    if prefix == "ne":
        return not contains
    if prefix == "gt":
        return hi > shi  # the range above the search value intersects the target
    if prefix == "lt":
        return lo < slo
    if prefix == "ge":
        return hi > shi or contains
    if prefix == "le":
        return lo < slo or contains
    if prefix == "sa":
        return lo > shi
    if prefix == "eb":
        return hi < slo
    raise AssertionError(prefix)


years = st.integers(1990, 2030)
months = st.integers(1, 12)
days = st.integers(1, 28)


@st.composite
def fhir_dates(draw) -> str:
    y = draw(years)
    kind = draw(st.sampled_from(["y", "m", "d", "min", "s", "f"]))
    if kind == "y":
        return f"{y}"
    m = draw(months)
    if kind == "m":
        return f"{y}-{m:02d}"
    d = draw(days)
    if kind == "d":
        return f"{y}-{m:02d}-{d:02d}"
    hh, mm = draw(st.integers(0, 23)), draw(st.integers(0, 59))
    tz = draw(st.sampled_from(["Z", "+07:00", "-03:30", ""]))
    if kind == "min":
        return f"{y}-{m:02d}-{d:02d}T{hh:02d}:{mm:02d}{tz}"
    ss = draw(st.integers(0, 59))
    if kind == "s":
        return f"{y}-{m:02d}-{d:02d}T{hh:02d}:{mm:02d}:{ss:02d}{tz}"
    return f"{y}-{m:02d}-{d:02d}T{hh:02d}:{mm:02d}:{ss:02d}.{draw(st.integers(0, 999)):03d}{tz}"


_engine = sa.create_engine("sqlite://")


YEAR = 366 * 86_400_000_000


def sql_matches(prefix: str, target: tuple[int, int], search_value: str, span: str | None) -> bool:
    v = parse_date_value(prefix + search_value)
    b = SqlBuilder()
    sql = (
        f"SELECT CASE WHEN {b.date_predicate('lo', 'hi', v, span)} THEN 1 ELSE 0 END "
        f"FROM (SELECT {b.p(target[0])} AS lo, {b.p(target[1])} AS hi) t"
    )
    with _engine.connect() as conn:
        return bool(conn.exec_driver_sql(sql, b.params).scalar_one())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    target=fhir_dates(),
    search_value=fhir_dates(),
    prefix=st.sampled_from(["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb"]),
    span=st.sampled_from([None, "exact", "year"]),
)
def test_sql_date_prefixes_match_reference(target, search_value, prefix, span):
    """With and without the index hints. ``span`` (an SQL expression in the server: the widest
    ``hi - lo`` stored for the parameter) is at least the target's own width: exactly it (the
    tightest bound the server can use), or a year (every generated value is at most that)."""
    t = date_range(target)
    s = date_range(search_value)
    bound = None if span is None else str(t[1] - t[0] if span == "exact" else YEAR)
    assert sql_matches(prefix, t, search_value, bound) == reference(prefix, t, s)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    target=st.tuples(fhir_dates(), fhir_dates()),
    search_value=fhir_dates(),
    prefix=st.sampled_from(["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb"]),
)
def test_sql_date_prefixes_on_periods(target, search_value, prefix):
    a, b = date_range(target[0]), date_range(target[1])
    t = (min(a[0], b[0]), max(a[1], b[1]))
    assert sql_matches(prefix, t, search_value, None) == reference(prefix, t, date_range(search_value))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=fhir_dates())
def test_ranges_are_ordered_and_contain_their_start(value):
    lo, hi = date_range(value)
    assert lo <= hi
    assert date_range(value.split("T")[0])[0] <= lo + 14 * 3600 * 1_000_000 + 1


def _by_datetimes(text: str) -> tuple[int, int] | None:
    """A date-time's range the plain way: an aware datetime, less the epoch (what date_range did
    before it counted days and seconds as integers)."""
    import re
    from datetime import UTC, datetime, timedelta, timezone

    m = re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?(Z|[+-]\d{2}:\d{2})?", text)
    assert m
    y, mo, d, hh, mm, ss, frac, tz = m.groups()
    try:
        zone = UTC
        if tz and tz != "Z":
            zone = timezone((1 if tz[0] == "+" else -1) * timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6])))
        if int(hh) == 24:
            return None
        micro = int((frac or "")[:6].ljust(6, "0"))
        lo = datetime(int(y), int(mo), int(d), int(hh), int(mm), int(ss or 0), micro, tzinfo=zone) - datetime(1970, 1, 1, tzinfo=UTC)
    except ValueError:
        return None
    lo_us = (lo.days * 86400 + lo.seconds) * 1_000_000 + lo.microseconds
    width = 60_000_000 if ss is None else 1_000_000 if frac is None else 10 ** (6 - len(frac[:6]))
    return lo_us, lo_us + width - 1


_two = st.integers(0, 99).map(lambda n: f"{n:02d}")


@settings(max_examples=1500, deadline=None)
@given(
    st.sampled_from(["0001", "1969", "1970", "2000", "2024", "9999"]),
    st.sampled_from(["01", "02", "12", "13", "00"]),
    st.sampled_from(["01", "28", "29", "30", "31", "00"]),
    st.sampled_from(["00", "07", "23", "24", "25"]),
    st.sampled_from(["00", "59", "60"]),
    st.one_of(st.none(), st.sampled_from(["00", "59", "60"])),
    st.one_of(st.none(), st.text("0123456789", min_size=1, max_size=9)),
    st.one_of(
        st.none(), st.just("Z"), st.tuples(st.sampled_from("+-"), st.sampled_from(["00", "07", "14", "23", "24"]), _two).map("".join)
    ),
)
def test_a_date_time_range_is_what_aware_datetimes_give(y, mo, d, hh, mm, ss, frac, tz):
    text = f"{y}-{mo}-{d}T{hh}:{mm}"
    if ss is not None:
        text += f":{ss}" + (f".{frac}" if frac else "")
    if tz and tz != "Z":
        tz = f"{tz[:3]}:{tz[3:]}"
    text += tz or ""
    assert date_range(text) == _by_datetimes(text)
    if _by_datetimes(text) is not None:  # the date alone: that whole day in UTC
        day = date_range(text[:10])
        assert day is not None and day[1] - day[0] == 86_400_000_000 - 1
