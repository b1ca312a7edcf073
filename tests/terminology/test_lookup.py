"""CodeSystem/$lookup."""

from __future__ import annotations

import pytest

from fhir_server.errors import FhirError
from terminology import urls
from terminology.parameters import get, get_all

COLORS = "http://example.org/CodeSystem/colors"

REGIONS = urls.KEMENDAGRI_WILAYAH


def props(params: dict) -> list[tuple[str, object]]:
    out = []
    for p in get_all(params, "property"):
        parts = {q["name"]: q for q in p["part"]}
        value = next(v for k, v in parts["value"].items() if k.startswith("value"))
        out.append((parts["code"]["valueCode"], value))
    return out


def test_lookup_returns_name_version_display(engine):
    out = engine.lookup(REGIONS, "320415")
    assert out["resourceType"] == "Parameters"
    assert get(out, "name") == "KemendagriWilayah"
    assert get(out, "version") == "300.2.2-2138-2025"
    assert get(out, "display") == "Pangalengan"


def test_lookup_returns_parent_and_level_but_not_children_by_default(engine):
    assert props(engine.lookup(REGIONS, "320415")) == [("parent", "3204"), ("level", "district"), ("type", "kecamatan")]


def test_lookup_of_a_province_has_no_parent(engine):
    assert ("level", "province") in props(engine.lookup(REGIONS, "32"))
    assert not [p for p in props(engine.lookup(REGIONS, "32")) if p[0] == "parent"]


def test_lookup_returns_children_only_when_asked(engine):
    out = props(engine.lookup(REGIONS, "320415", properties=["child"]))
    assert out[0] == ("child", "3204152001")
    assert {code for code, _ in out} == {"child"}
    assert len(out) == 13


def test_lookup_filters_properties_to_those_asked(engine):
    assert props(engine.lookup(REGIONS, "3204152003", properties=["level", "postalCode"])) == [
        ("level", "village"),
        ("postalCode", "40378"),
    ]


def test_lookup_unknown_code_is_404_not_found(engine):
    with pytest.raises(FhirError) as e:
        engine.lookup(REGIONS, "3299")
    assert e.value.status == 404
    assert e.value.issues[0].code == "not-found"


def test_lookup_unknown_system_is_404(engine):
    with pytest.raises(FhirError) as e:
        engine.lookup("http://example.org/nope", "1")
    assert e.value.status == 404


def test_lookup_unknown_version_is_404(engine):
    with pytest.raises(FhirError) as e:
        engine.lookup(REGIONS, "32", version="1999")
    assert e.value.status == 404


def test_lookup_dict_codesystem_has_designations_parent_and_properties(engine):
    out = engine.lookup(COLORS, "red")
    assert get(out, "display") == "Red"
    designation = get(out, "designation")
    assert {"name": "language", "valueCode": "id"} in designation
    assert {"name": "value", "valueString": "Merah"} in designation
    assert props(out) == [("warm", True)]
    assert props(engine.lookup(COLORS, "crimson")) == [("parent", "red")]


def test_lookup_is_case_insensitive_when_the_codesystem_is(engine):
    assert get(engine.lookup(COLORS, "RED"), "display") == "Red"


def test_lookup_output_is_valid_r4_parameters(engine):
    from fhir.resources.R4B.parameters import Parameters

    Parameters.model_validate(engine.lookup(REGIONS, "3204152003", properties=["child", "parent", "level"]))
    Parameters.model_validate(engine.lookup(COLORS, "red"))
