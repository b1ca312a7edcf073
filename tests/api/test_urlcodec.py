"""fhir_server.urlcodec gives exactly what urllib gives."""

from __future__ import annotations

import urllib.parse

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fhir_server import urlcodec

_QUERY_ALPHABET = st.sampled_from([*"aZ09_-.~ +&=%;/:|?#,$@!'()*\t\x00é€", "%7C", "%2", "%zz", "%C3%A9", "%00", "%E2%82"])


@pytest.mark.slow
@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text())
def test_quote_plus_is_urllibs(text: str) -> None:
    assert urlcodec.quote_plus(text) == urllib.parse.quote_plus(text)


@pytest.mark.slow
@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_QUERY_ALPHABET, max_size=30).map("".join))
def test_parse_qsl_is_urllibs(query: str) -> None:
    assert urlcodec.parse_qsl(query) == urllib.parse.parse_qsl(query, keep_blank_values=True)


def test_typical_queries() -> None:
    for query in [
        "identifier=https://fhir.kemkes.go.id/id/nik%7C3171234567890123&_count=20",
        "family=Lubis&_count=20",
        "birthdate=ge1990-05-01&birthdate=le1990-05-28",
        "a",
        "a=",
        "&&a=1&",
        "name=Siti+Ayu",
        "name=%E2%82%AC&x=%zz",
        "_sort=-date&_include=Encounter:subject",
    ]:
        assert urlcodec.parse_qsl(query) == urllib.parse.parse_qsl(query, keep_blank_values=True), query
    assert urlcodec.quote_plus("https://fhir.kemkes.go.id/id/nik|1") == "https%3A%2F%2Ffhir.kemkes.go.id%2Fid%2Fnik%7C1"


_OLD_CONTROL = __import__("re").compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@pytest.mark.slow
@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.sampled_from(
            [
                b"a",
                b"=",
                b"&",
                b"+",
                b"%",
                b"0",
                b"1",
                b"7",
                b"9",
                b"b",
                b"B",
                b"e",
                b"F",
                b"f",
                b"A",
                b"\x00",
                b"\x09",
                b"\x0a",
                b"\x1f",
                b"\x7f",
                b"%2",
                b"%0",
                b"%1",
                b"%7",
            ]
        ),
        max_size=12,
    ).map(b"".join)
)
def test_guard_control_check_matches_the_unquoted_search(query: bytes) -> None:
    """The guard's raw-bytes pattern finds exactly the queries whose unquoted form holds a control character."""
    from fhir_server.api.guard import _CONTROL

    expected = _OLD_CONTROL.search(urllib.parse.unquote_to_bytes(query.replace(b"+", b" "))) is not None
    assert (_CONTROL.search(query) is not None) == expected
