from datetime import UTC, datetime

from fhir_server.search.values import date_range, normalize_string, parse_reference


def us(*args, tz=UTC) -> int:
    return int(datetime(*args, tzinfo=tz).timestamp() * 1_000_000)


def test_partial_dates_cover_their_whole_period():
    assert date_range("2020") == (us(2020, 1, 1), us(2021, 1, 1) - 1)
    assert date_range("2020-02") == (us(2020, 2, 1), us(2020, 3, 1) - 1)
    assert date_range("2020-02-29") == (us(2020, 2, 29), us(2020, 3, 1) - 1)


def test_datetimes_honour_zone_and_precision():
    assert date_range("2020-01-01T10:00:00+07:00") == (us(2020, 1, 1, 3), us(2020, 1, 1, 3, 0, 1) - 1)
    assert date_range("2020-01-01T10:00Z") == (us(2020, 1, 1, 10), us(2020, 1, 1, 10, 1) - 1)
    lo, hi = date_range("2020-01-01T10:00:00.5Z")
    assert hi - lo == 100_000 - 1
    # no zone: read as UTC
    assert date_range("2020-01-01T10:00:00") == date_range("2020-01-01T10:00:00Z")


def test_malformed_dates_are_rejected():
    for bad in ("2020-13", "2020-02-30", "20200101", "2020-01-01T25:00", "abc", "2020-1-1"):
        assert date_range(bad) is None


def test_strings_are_lowercased_accent_stripped_and_collapsed():
    assert normalize_string("  Jl.  MÉLATI\tNo 7 ") == "jl. melati no 7"


def test_reference_parsing():
    assert parse_reference("Patient/123") == ("Patient", "123", None, None)
    assert parse_reference("Patient/123/_history/2") == ("Patient", "123", "2", None)
    assert parse_reference("http://x/fhir/Patient/1") == (None, None, None, "http://x/fhir/Patient/1")
    assert parse_reference("#c1") == (None, None, None, None)
