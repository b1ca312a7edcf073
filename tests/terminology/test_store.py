"""Loading terminology content."""

from __future__ import annotations

import json

import pytest

from terminology import urls
from terminology.store import TerminologyRegistry


def test_default_registry_has_regions_and_their_valuesets(registry):
    assert registry.code_system(urls.KEMENDAGRI_WILAYAH) is not None
    assert registry.value_set(urls.KEMENDAGRI_VILLAGE_VS) is not None
    assert registry.value_set(urls.KEMENDAGRI_WILAYAH + "?vs") is not None


def test_all_resources_yields_fhir_terminology_resources_with_urls(registry):
    resources = list(registry.all_resources())
    assert {r["resourceType"] for r in resources} >= {"CodeSystem", "ValueSet", "ConceptMap"}
    assert all(r.get("url") for r in resources)
    regions = next(r for r in resources if r["url"] == urls.KEMENDAGRI_WILAYAH)
    assert regions["content"] == "not-present"


def test_load_directory_is_recursive_and_skips_non_fhir_files(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    cs = {"resourceType": "CodeSystem", "url": "http://x/cs", "status": "active", "content": "complete", "concept": [{"code": "1"}]}
    (tmp_path / "a" / "b" / "cs.json").write_text(json.dumps(cs))
    (tmp_path / "a" / "compact.json").write_text(json.dumps({"valuesets": {"x": ["a"]}}))
    (tmp_path / "a" / "patient.json").write_text(json.dumps({"resourceType": "Patient"}))
    (tmp_path / "broken.json").write_text("{")
    bundle = {"resourceType": "Bundle", "entry": [{"resource": {**cs, "resourceType": "ValueSet", "url": "http://x/vs"}}]}
    (tmp_path / "bundle.json").write_text(json.dumps(bundle))
    reg = TerminologyRegistry()
    assert reg.load_directory(tmp_path) == 2
    assert reg.code_system("http://x/cs") is not None and reg.value_set("http://x/vs") is not None


def test_latest_version_wins_and_versions_can_be_asked_for():
    reg = TerminologyRegistry()
    for v in ("1.9", "1.10", "1.2"):
        reg.add({"resourceType": "ValueSet", "url": "http://x/vs", "version": v, "status": "active"})
    assert reg.value_set("http://x/vs")["version"] == "1.10"
    assert reg.value_set("http://x/vs|1.2")["version"] == "1.2"
    assert reg.value_set("http://x/vs", "1.9")["version"] == "1.9"


def test_an_overlay_adds_over_a_registry_and_leaves_it_as_it_was():
    base = TerminologyRegistry()
    base.add({"resourceType": "ValueSet", "url": "http://x/vs", "status": "active", "title": "shipped"})
    base._packaged_value_sets = frozenset({"http://x/vs"})
    over = base.overlaid(
        [
            {"resourceType": "ValueSet", "url": "http://x/vs", "status": "active", "title": "stored"},
            {"resourceType": "ConceptMap", "url": "http://x/cm", "status": "active"},
        ]
    )
    assert over.value_set("http://x/vs")["title"] == "stored" and not over.is_packaged_value_set("http://x/vs")
    assert over.concept_map("http://x/cm") is not None
    assert base.value_set("http://x/vs")["title"] == "shipped" and base.is_packaged_value_set("http://x/vs")
    assert base.concept_map("http://x/cm") is None


def test_adding_a_non_terminology_resource_is_refused():
    with pytest.raises(ValueError):
        TerminologyRegistry().add({"resourceType": "Patient"})


def test_shipped_content_codesystems_answer_lookup(engine):
    dict_systems = [r for r in engine.registry.all_resources() if r["resourceType"] == "CodeSystem" and r.get("concept")]
    for cs in dict_systems:
        code = cs["concept"][0]["code"]
        assert engine.lookup(cs["url"], code)["parameter"][0]["name"] == "name"


def test_stored_regions_resource_read_back_does_not_replace_the_index(registry):
    from terminology.regions import RegionCodeSystem

    reg = TerminologyRegistry.load_default()
    reg.add(RegionCodeSystem().resource())
    assert reg.code_system(urls.KEMENDAGRI_WILAYAH).display("32") == "Jawa Barat"
