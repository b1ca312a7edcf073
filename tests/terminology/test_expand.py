"""ValueSet/$expand."""

from __future__ import annotations

import pytest

from fhir_server.errors import FhirError
from terminology import urls

COLORS = "http://example.org/CodeSystem/colors"
WARM_VS = {"url": "http://example.org/ValueSet/warm"}

REGIONS = urls.KEMENDAGRI_WILAYAH


def codes(vs: dict) -> list[str]:
    return [c["code"] for c in vs["expansion"].get("contains", [])]


def region_vs(*filters: dict) -> dict:
    return {"resourceType": "ValueSet", "status": "active", "compose": {"include": [{"system": REGIONS, "filter": list(filters)}]}}


def test_expand_provinces(engine):
    out = engine.expand(urls.KEMENDAGRI_PROVINCE_VS)
    assert out["url"] == urls.KEMENDAGRI_PROVINCE_VS
    assert "compose" not in out
    assert out["expansion"]["total"] == 38
    assert codes(out)[:2] == ["11", "12"]
    assert out["expansion"]["contains"][0] == {"system": REGIONS, "version": "300.2.2-2138-2025", "code": "11", "display": "Aceh"}


def test_expand_villages_of_a_district_with_parent_filter(engine):
    out = engine.expand(value_set=region_vs({"property": "parent", "op": "=", "value": "320415"}))
    assert out["expansion"]["total"] == 13
    assert all(c.startswith("320415") and len(c) == 10 for c in codes(out))


def test_expand_descendants_restricted_to_a_level(engine):
    out = engine.expand(
        value_set=region_vs(
            {"property": "concept", "op": "descendent-of", "value": "3204"}, {"property": "level", "op": "=", "value": "district"}
        )
    )
    assert out["expansion"]["total"] == 31
    assert codes(out)[0] == "320405"


def test_is_a_includes_the_code_itself_descendent_of_does_not(engine):
    is_a = engine.expand(value_set=region_vs({"property": "concept", "op": "is-a", "value": "320415"}))
    desc = engine.expand(value_set=region_vs({"property": "concept", "op": "descendent-of", "value": "320415"}))
    assert codes(is_a)[0] == "320415"
    assert is_a["expansion"]["total"] == desc["expansion"]["total"] + 1 == 14


def test_expand_pages_with_count_and_offset(engine):
    first = engine.expand(urls.KEMENDAGRI_VILLAGE_VS, count=10)
    second = engine.expand(urls.KEMENDAGRI_VILLAGE_VS, count=10, offset=5)
    assert first["expansion"]["total"] == second["expansion"]["total"] == 83762
    assert len(codes(first)) == 10
    assert second["expansion"]["offset"] == 5
    assert codes(second)[:5] == codes(first)[5:]


def test_expand_offset_past_the_end_is_empty(engine):
    out = engine.expand(urls.KEMENDAGRI_PROVINCE_VS, offset=100, count=10)
    assert out["expansion"]["total"] == 38
    assert "contains" not in out["expansion"]


def test_text_filter_is_case_insensitive_word_prefix(engine):
    out = engine.expand(urls.KEMENDAGRI_VILLAGE_VS, filter="WARNAS", count=100)
    assert "3204152003" in codes(out)
    assert all(any(w.startswith("warnas") for w in c["display"].lower().split()) for c in out["expansion"]["contains"])
    # "sari" starts no word of "Warnasari"
    assert "3204152003" not in codes(engine.expand(urls.KEMENDAGRI_VILLAGE_VS, filter="sari", count=10_000))


def test_text_filter_needs_every_term(engine):
    out = engine.expand(urls.KEMENDAGRI_CITY_VS, filter="kota band")
    assert "3273" in codes(out)
    assert "3204" not in codes(out)  # Kabupaten Bandung: no word starts with "kota"
    assert all(c["display"].lower().startswith("kota ban") for c in out["expansion"]["contains"])


def test_text_filter_combines_with_hierarchy(engine):
    out = engine.expand(value_set=region_vs({"property": "parent", "op": "=", "value": "320415"}), filter="warna")
    assert codes(out) == ["3204152003"]


def test_filter_is_echoed_in_expansion_parameters(engine):
    params = engine.expand(urls.KEMENDAGRI_PROVINCE_VS, filter="jawa", count=5)["expansion"]["parameter"]
    assert {"name": "filter", "valueString": "jawa"} in params
    assert {"name": "count", "valueInteger": 5} in params


def test_implicit_codesystem_valueset(engine):
    out = engine.expand(REGIONS + "?vs", count=3)
    assert out["expansion"]["total"] == 91599
    assert codes(out) == ["11", "1101", "110101"]


def test_large_unpaged_expansion_is_too_costly(engine):
    with pytest.raises(FhirError) as e:
        engine.expand(urls.KEMENDAGRI_VILLAGE_VS)
    assert e.value.status == 422
    assert e.value.issues[0].code == "too-costly"


def test_unknown_valueset_is_404(engine):
    with pytest.raises(FhirError) as e:
        engine.expand("http://example.org/ValueSet/nope")
    assert e.value.status == 404


def test_negative_count_is_400(engine):
    with pytest.raises(FhirError) as e:
        engine.expand(urls.KEMENDAGRI_PROVINCE_VS, count=-1)
    assert e.value.status == 400


def test_dict_codesystem_is_a_filter_with_exclude(engine):
    assert codes(engine.expand(WARM_VS["url"])) == ["red", "crimson"]


def test_property_equals_filter_on_dict_codesystem(engine):
    vs = {
        "resourceType": "ValueSet",
        "status": "active",
        "compose": {"include": [{"system": COLORS, "filter": [{"property": "warm", "op": "=", "value": "false"}]}]},
    }
    assert codes(engine.expand(value_set=vs)) == ["blue"]


def test_concept_list_include_with_display_from_codesystem(engine):
    vs = {
        "resourceType": "ValueSet",
        "status": "active",
        "compose": {
            "include": [
                {"system": COLORS, "concept": [{"code": "navy"}, {"code": "red", "display": "Merah"}]},
                {"system": REGIONS, "concept": [{"code": "32"}]},
            ]
        },
    }
    out = engine.expand(value_set=vs)["expansion"]["contains"]
    assert [(c["code"], c["display"]) for c in out] == [("navy", "Navy blue"), ("red", "Merah"), ("32", "Jawa Barat")]


def test_include_of_another_valueset(engine):
    vs = {"resourceType": "ValueSet", "status": "active", "compose": {"include": [{"valueSet": [WARM_VS["url"]]}]}}
    assert codes(engine.expand(value_set=vs)) == ["red", "crimson"]


def test_expansion_is_valid_r4(engine):
    from fhir.resources.R4B.valueset import ValueSet

    ValueSet.model_validate(engine.expand(urls.KEMENDAGRI_VILLAGE_VS, filter="warna", count=5))


def test_type_filter_selects_cities_not_regencies(engine):
    out = engine.expand(
        value_set=region_vs({"property": "type", "op": "=", "value": "kota"}, {"property": "concept", "op": "is-a", "value": "32"})
    )
    assert out["expansion"]["total"] == 9
    assert all(c["display"].startswith("Kota ") for c in out["expansion"]["contains"])


@pytest.mark.slow
def test_kelurahan_and_desa_add_up_to_all_villages(engine):
    def total(kind):
        return engine.expand(value_set=region_vs({"property": "type", "op": "=", "value": kind}), count=0)["expansion"]["total"]

    assert (total("kelurahan"), total("desa"), total("desa-adat")) == (8496, 75252, 14)
