"""terminology.operations: R4 operation parameters (query strings or Parameters bodies) to engine calls."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from fhir_server.errors import FhirError
from terminology import operations, urls
from terminology.parameters import get
from terminology.regions import RegionCodeSystem, region_valuesets

REGIONS = urls.KEMENDAGRI_WILAYAH


def query(**params: Any) -> Callable[[str], list[Any]]:
    """A values() getter like the HTTP layer's: every value is a list entry."""
    return lambda name: [v for v in (params.get(name) if isinstance(params.get(name), list) else [params[name]] if name in params else [])]


def test_lookup_from_query_strings(engine):
    out = operations.lookup(engine, query(system=REGIONS, code="320415", property=["level", "child"]))
    assert get(out, "display") == "Pangalengan"


def test_lookup_from_a_coding(engine):
    out = operations.lookup(engine, query(coding={"system": REGIONS, "code": "32"}))
    assert get(out, "display") == "Jawa Barat"


def test_lookup_on_the_stored_regions_instance(engine):
    out = operations.lookup(engine, query(code="32"), instance=RegionCodeSystem().resource())
    assert get(out, "display") == "Jawa Barat"


def test_lookup_on_an_instance_not_in_the_registry(engine):
    cs = {
        "resourceType": "CodeSystem",
        "url": "http://x/new",
        "status": "active",
        "content": "complete",
        "concept": [{"code": "a", "display": "A"}],
    }
    assert get(operations.lookup(engine, query(code="a"), instance=cs), "display") == "A"


def test_expand_count_and_offset_from_strings(engine):
    out = operations.expand(engine, query(url=urls.KEMENDAGRI_VILLAGE_VS, filter="warna", count="2", offset="1"))
    assert out["expansion"]["offset"] == 1 and len(out["expansion"]["contains"]) == 2


def test_expand_instance(engine):
    district = next(vs for vs in region_valuesets() if vs["url"] == urls.KEMENDAGRI_DISTRICT_VS)
    assert operations.expand(engine, query(count="0"), instance=district)["expansion"]["total"] == 7285


def test_bad_integer_is_400(engine):
    with pytest.raises(FhirError) as e:
        operations.expand(engine, query(url=urls.KEMENDAGRI_VILLAGE_VS, count="ten"))
    assert e.value.status == 400


def test_repeated_single_parameter_is_400(engine):
    with pytest.raises(FhirError) as e:
        operations.lookup(engine, query(system=REGIONS, code=["32", "33"]))
    assert e.value.status == 400


def test_validate_code_vs_and_cs(engine):
    assert get(operations.validate_code_vs(engine, query(url=urls.KEMENDAGRI_PROVINCE_VS, code="32")), "result") is True
    assert get(operations.validate_code_cs(engine, query(url=REGIONS, code="3299")), "result") is False


def test_translate_reverse_from_string(engine):
    out = operations.translate(engine, query(system="http://example.org/CodeSystem/shades", code="R", reverse="true"))
    assert get(out, "result") is True


def test_subsumes_from_codings(engine):
    out = operations.subsumes(engine, query(codingA={"system": REGIONS, "code": "32"}, codingB={"system": REGIONS, "code": "3204"}))
    assert get(out, "outcome") == "subsumes"


def test_every_operation_is_listed():
    assert set(operations.OPERATIONS) == {
        "CodeSystem/$lookup",
        "CodeSystem/$validate-code",
        "CodeSystem/$subsumes",
        "ValueSet/$expand",
        "ValueSet/$validate-code",
        "ConceptMap/$translate",
    }


def test_translate_with_a_concept_map_instance_not_in_the_registry(engine):
    cm = {
        "resourceType": "ConceptMap",
        "url": "http://x/cm",
        "status": "active",
        "group": [
            {
                "source": "http://x/a",
                "target": "http://x/b",
                "element": [{"code": "1", "target": [{"code": "one", "equivalence": "equal"}]}],
            }
        ],
    }
    out = operations.translate(engine, query(system="http://x/a", code="1"), instance=cm)
    assert get(out, "result") is True
    assert engine.registry.concept_map("http://x/cm") is None
