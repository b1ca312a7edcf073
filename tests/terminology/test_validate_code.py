"""CodeSystem/$validate-code and ValueSet/$validate-code."""

from __future__ import annotations

import pytest

from fhir_server.errors import FhirError
from terminology import urls
from terminology.parameters import get

REGIONS = urls.KEMENDAGRI_WILAYAH
COLORS = "http://example.org/CodeSystem/colors"
WARM = "http://example.org/ValueSet/warm"


def test_cs_known_code_is_valid_with_display(engine):
    out = engine.validate_code_cs(REGIONS, "3204152003")
    assert get(out, "result") is True
    assert get(out, "display") == "Warnasari"
    assert get(out, "message") is None


def test_cs_unknown_code_is_invalid_with_message(engine):
    out = engine.validate_code_cs(REGIONS, "3204159999")
    assert get(out, "result") is False
    assert "Unknown code '3204159999'" in get(out, "message")


def test_cs_dotted_code_is_invalid(engine):
    assert get(engine.validate_code_cs(REGIONS, "32.04"), "result") is False


def test_cs_wrong_display_keeps_result_true_with_message(engine):
    out = engine.validate_code_cs(REGIONS, "320415", display="Bandung")
    assert get(out, "result") is True
    assert "should be 'Pangalengan'" in get(out, "message")


def test_cs_coding_of_another_system_is_invalid(engine):
    out = engine.validate_code_cs(REGIONS, coding={"system": COLORS, "code": "32"})
    assert get(out, "result") is False


def test_cs_unknown_codesystem_is_404(engine):
    with pytest.raises(FhirError) as e:
        engine.validate_code_cs("http://example.org/nope", "1")
    assert e.value.status == 404


def test_cs_without_any_code_is_400(engine):
    with pytest.raises(FhirError) as e:
        engine.validate_code_cs(REGIONS)
    assert e.value.status == 400


def test_vs_member_of_level_valueset(engine):
    out = engine.validate_code_vs(urls.KEMENDAGRI_DISTRICT_VS, code="320415", system=REGIONS)
    assert get(out, "result") is True
    assert get(out, "display") == "Pangalengan"


def test_vs_existing_code_of_wrong_level_is_not_member(engine):
    out = engine.validate_code_vs(urls.KEMENDAGRI_DISTRICT_VS, code="3204", system=REGIONS)
    assert get(out, "result") is False
    assert "not in the value set" in get(out, "message")


def test_vs_code_without_system_is_inferred_from_a_single_system_valueset(engine):
    assert get(engine.validate_code_vs(urls.KEMENDAGRI_VILLAGE_VS, code="3204152003"), "result") is True


def test_vs_code_from_other_system_is_not_member(engine):
    assert get(engine.validate_code_vs(urls.KEMENDAGRI_PROVINCE_VS, code="32", system=COLORS), "result") is False


def test_vs_hierarchical_subset(engine):
    vs = {
        "resourceType": "ValueSet",
        "status": "active",
        "compose": {"include": [{"system": REGIONS, "filter": [{"property": "parent", "op": "=", "value": "320415"}]}]},
    }
    assert get(engine.validate_code_vs(value_set=vs, code="3204152003", system=REGIONS), "result") is True
    assert get(engine.validate_code_vs(value_set=vs, code="3204162001", system=REGIONS), "result") is False


def test_vs_filter_and_exclude_on_dict_codesystem(engine):
    assert get(engine.validate_code_vs(WARM, code="crimson", system=COLORS), "result") is True
    assert get(engine.validate_code_vs(WARM, code="scarlet", system=COLORS), "result") is False
    assert get(engine.validate_code_vs(WARM, code="navy", system=COLORS), "result") is False


def test_vs_codeable_concept_is_valid_when_any_coding_is(engine):
    cc = {"coding": [{"system": COLORS, "code": "navy"}, {"system": COLORS, "code": "red", "display": "Red"}]}
    out = engine.validate_code_vs(WARM, codeable_concept=cc)
    assert get(out, "result") is True
    assert get(out, "display") == "Red"


def test_vs_implicit_codesystem_valueset(engine):
    assert get(engine.validate_code_vs(COLORS + "?vs", code="navy", system=COLORS), "result") is True


def test_vs_unknown_valueset_is_404(engine):
    with pytest.raises(FhirError) as e:
        engine.validate_code_vs("http://example.org/ValueSet/nope", code="x", system=COLORS)
    assert e.value.status == 404


def test_cs_without_content_cannot_validate(engine):
    engine.registry.add(
        {"resourceType": "CodeSystem", "url": "http://example.org/CodeSystem/empty", "status": "active", "content": "not-present"}
    )
    out = engine.validate_code_cs("http://example.org/CodeSystem/empty", "1")
    assert get(out, "result") is False
    assert "not-present" in get(out, "message")
