"""Query parsing: grammar, malformed values (400), strict and lenient handling."""

from __future__ import annotations

import pytest
from searchutil import search

from fhir_server.errors import FhirError
from fhir_server.search.parse import (
    DateValue,
    TokenValue,
    parse_query,
    split_unescaped,
    unescape,
)


def test_split_respects_backslash_escapes():
    assert split_unescaped(r"a\,b,c", ",") == [r"a\,b", "c"]
    assert unescape(r"a\,b\|c\$d\\e") == r"a,b|c$d\e"


def test_or_values_and_repeated_parameters():
    q = parse_query("Patient", [("family", "a,b"), ("family", "c")])
    assert [c.values for c in q.criteria] == [["a", "b"], ["c"]]


def test_token_forms():
    q = parse_query("Patient", [("identifier", "s|v,|v,v,s|")])
    assert q.criteria[0].values == [TokenValue("s", "v"), TokenValue("", "v"), TokenValue(None, "v"), TokenValue("s", None)]


def test_date_prefix_is_parsed():
    (c,) = parse_query("Patient", [("birthdate", "ge2020")]).criteria
    assert isinstance(c.values[0], DateValue) and c.values[0].prefix == "ge"


def test_chain_of_depth_two():
    q = parse_query("Encounter", [("subject:Patient.organization.name", "RS")])
    c = q.criteria[0]
    assert c.chain_types == ("Patient",)
    assert c.chain.code == "organization" and c.chain.chain.code == "name"


def test_nested_has():
    q = parse_query("Patient", [("_has:Encounter:patient:_has:Observation:encounter:code", "x")])
    c = q.criteria[0]
    assert c.has_type == "Encounter" and c.has.has_type == "Observation"


@pytest.mark.parametrize(
    "name,value,why",
    [
        ("birthdate", "2020-13", "not a valid date"),
        ("birthdate", "xx2020", "unknown prefix"),
        ("birthdate", "ge20200101", "not a valid date"),
        ("_count", "-1", "non-negative"),
        ("_count", "ten", "non-negative"),
        ("_lastUpdated", "yesterday", "not a valid date"),
        ("gender:missing", "maybe", "true or false"),
        ("_summary", "everything", "_summary"),
        ("_total", "all", "_total"),
        ("identifier", "a|b|c", "more than one"),
        ("_has:Foo:patient:code", "x", "not a resource type"),
        ("_include", "Encounter", "Type:param"),
    ],
)
def test_malformed_values_are_400_naming_the_parameter(name, value, why):
    with pytest.raises(FhirError) as e:
        parse_query("Patient", [(name, value)])
    assert e.value.status == 400
    assert why in e.value.issues[0].diagnostics
    assert name.split(":")[0] in e.value.issues[0].diagnostics or name in (e.value.issues[0].expression or "")


def test_number_malformed(store):
    with pytest.raises(FhirError) as e:
        search(store, "RiskAssessment", "probability=gtabc")
    assert e.value.status == 400


def test_unknown_parameter_is_ignored_and_reported_by_default(store):
    store.put({"resourceType": "Patient", "id": "a"})
    res = search(store, "Patient", "foo=bar&_id=a")
    assert [i for _, i, _ in res.matches] == ["a"]
    assert res.issues[0].severity == "warning" and "foo" in res.issues[0].diagnostics
    assert ("foo", "bar") not in res.self_params and ("_id", "a") in res.self_params


def test_unknown_parameter_is_400_when_strict(store):
    with pytest.raises(FhirError) as e:
        search(store, "Patient", "foo=bar", strict=True)
    assert e.value.status == 400


def test_unsupported_modifier_is_reported(store):
    # (token :in/:not-in/:below/:above are answered by the terminology: test_terminology_modifiers.py)
    res = search(store, "Patient", "gender:contains=ale")
    assert res.issues and "contains" in res.issues[0].diagnostics
    with pytest.raises(FhirError):
        search(store, "Patient", "gender:exact=male", strict=True)


def test_unsupported_parameter_types_are_not_faked(store):
    res = search(store, "Patient", "_text=smith")  # full-text search: not implemented
    assert res.issues and res.issues[0].code == "not-supported"
    res = search(store, "MolecularSequence", "chromosome-variant-coordinate=1$gt5$lt9")
    assert res.issues and res.issues[0].code == "not-supported"


def test_composite_needs_one_dollar():
    with pytest.raises(FhirError) as e:
        parse_query("Observation", [("code-value-quantity", "8480-6")])
    assert e.value.status == 400


def test_format_and_pretty_are_ignored_silently(store):
    res = search(store, "Patient", "_format=json&_pretty=true")
    assert not res.issues


def test_unknown_resource_type_is_404():
    with pytest.raises(FhirError) as e:
        parse_query("Nope", [])
    assert e.value.status == 404


def test_bad_page_token_is_400(store):
    with pytest.raises(FhirError) as e:
        search(store, "Patient", "_cursor=garbage")
    assert e.value.status == 400


def test_nul_characters_are_400():
    with pytest.raises(FhirError) as e:
        parse_query("Patient", [("family", "a\x00b")])
    assert e.value.status == 400 and "NUL" in e.value.issues[0].diagnostics


def test_too_many_criteria_are_refused_before_reaching_the_database():
    with pytest.raises(FhirError) as e:
        parse_query("Patient", [("name", f"n{i}") for i in range(500)])
    assert e.value.status == 400 and e.value.issues[0].code == "too-costly"


def test_too_many_or_values_are_refused():
    with pytest.raises(FhirError) as e:
        parse_query("Patient", [("_id", ",".join(f"i{i}" for i in range(101)))])
    assert e.value.issues[0].code == "too-costly"


def test_chain_depth_is_limited():
    deep = "_has:Encounter:patient:_has:Observation:encounter:_has:Observation:has-member:_has:Observation:has-member:code"
    with pytest.raises(FhirError) as e:
        parse_query("Patient", [(deep, "x")])
    assert e.value.issues[0].code == "too-costly"


def test_overlong_reference_parts_are_indexed_as_urls(store):
    from fhir_server.search.extract import extract_index

    rows = extract_index(
        {"resourceType": "Encounter", "id": "e", "status": "finished", "class": {"code": "A"}, "subject": {"reference": "X" * 70 + "/1"}}
    ).reference
    assert rows[0]["target_type"] is None and rows[0]["url"].endswith("/1")
