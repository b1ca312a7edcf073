"""uri search parameters and their modifiers (R4 search.html, uri): exact, ``:contains``,
``:below``, ``:above`` and ``:missing``, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from searchutil import idset, search

ACME = "http://acme.org/fhir/ValueSet/123"


@pytest.fixture
def value_sets(store):
    for vid, url in (
        ("v1", ACME),
        ("v2", "http://acme.org/fhir/ValueSet/1234"),
        ("v3", "http://example.org/fhir/ValueSet/Acme-Colours"),
        ("v4", "urn:oid:2.16.840.1.113883.4.642.3.1"),
        ("v5", "http://example.org/100%_sure"),
    ):
        store.put({"resourceType": "ValueSet", "id": vid, "status": "active", "url": url})
    store.put({"resourceType": "ValueSet", "id": "no-url", "status": "draft"})
    return store


def test_contains_finds_the_value_anywhere_in_the_uri(value_sets):
    assert idset(value_sets, "ValueSet", "url:contains=acme", strict=True) == {"v1", "v2", "v3"}
    assert idset(value_sets, "ValueSet", "url:contains=ValueSet/123", strict=True) == {"v1", "v2"}
    assert idset(value_sets, "ValueSet", "url:contains=113883", strict=True) == {"v4"}


def test_contains_ignores_case_as_for_strings(value_sets):
    assert idset(value_sets, "ValueSet", "url:contains=ACME", strict=True) == {"v1", "v2", "v3"}


def test_contains_treats_like_wildcards_as_text(value_sets):
    assert idset(value_sets, "ValueSet", "url:contains=100%25_", strict=True) == {"v5"}
    assert idset(value_sets, "ValueSet", "url:contains=%25", strict=True) == {"v5"}
    assert idset(value_sets, "ValueSet", "url:contains=_", strict=True) == {"v5"}


def test_contains_with_several_values_is_or(value_sets):
    assert idset(value_sets, "ValueSet", "url:contains=1234,oid", strict=True) == {"v2", "v4"}


def test_below_and_above(value_sets):
    assert idset(value_sets, "ValueSet", "url:below=http://acme.org/fhir/", strict=True) == {"v1", "v2"}
    assert idset(value_sets, "ValueSet", "url:below=http://acme.org/fhir/ValueSet/123", strict=True) == {"v1", "v2"}
    assert idset(value_sets, "ValueSet", f"url:above={ACME}/_history/5", strict=True) == {"v1"}
    assert idset(value_sets, "ValueSet", f"url:above={ACME}", strict=True) == {"v1"}


def test_exact_and_missing(value_sets):
    assert idset(value_sets, "ValueSet", f"url={ACME}", strict=True) == {"v1"}
    assert idset(value_sets, "ValueSet", "url=http://acme.org/fhir/valueset/123", strict=True) == set()
    assert idset(value_sets, "ValueSet", "url:missing=true", strict=True) == {"no-url"}


def test_other_modifiers_on_uri_are_refused_in_strict_mode(value_sets):
    from fhir_server.errors import FhirError

    with pytest.raises(FhirError):
        search(value_sets, "ValueSet", "url:exact=x", strict=True)


def test_contains_over_http_the_issue_example(client):
    """``ValueSet?url:contains=acme`` (issue 20) finds the ValueSet, answered by the hot path or the route alike."""
    r = client.post(
        "/fhir/ValueSet",
        json={"resourceType": "ValueSet", "status": "active", "url": "http://acme.org/fhir/ValueSet/colours"},
        headers={"Content-Type": "application/fhir+json"},
    )
    assert r.status_code == 201, r.text
    for query in ("url:contains=acme", "url:contains=acme&_format=json"):
        found = client.get(f"/fhir/ValueSet?{query}", headers={"Prefer": "handling=strict"})
        assert found.status_code == 200, found.text
        assert [e["resource"]["url"] for e in found.json()["entry"]] == ["http://acme.org/fhir/ValueSet/colours"]
