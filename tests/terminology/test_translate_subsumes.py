"""ConceptMap/$translate and CodeSystem/$subsumes."""

from __future__ import annotations

import pytest

from fhir_server.errors import FhirError
from terminology import urls
from terminology.parameters import get, get_all

REGIONS = urls.KEMENDAGRI_WILAYAH
COLORS = "http://example.org/CodeSystem/colors"
SHADES = "http://example.org/CodeSystem/shades"
CM = "http://example.org/ConceptMap/colors-to-shades"


def matches(out: dict) -> list[tuple[str, dict | None, str]]:
    res = []
    for m in get_all(out, "match"):
        parts = {p["name"]: p for p in m["part"]}
        res.append((parts["equivalence"]["valueCode"], parts.get("concept", {}).get("valueCoding"), parts["source"]["valueUri"]))
    return res


def test_translate_forward_by_conceptmap_url(engine):
    out = engine.translate(url=CM, system=COLORS, code="red")
    assert get(out, "result") is True
    assert matches(out) == [("equivalent", {"system": SHADES, "code": "R", "display": "Reddish"}, CM)]


def test_translate_by_source_and_target_valuesets(engine):
    out = engine.translate(
        system=COLORS, code="crimson", source="http://example.org/ValueSet/colors", target="http://example.org/ValueSet/shades"
    )
    assert matches(out) == [("wider", {"system": SHADES, "code": "R", "display": "Reddish"}, CM)]


def test_translate_reverse_lists_every_source_and_inverts_wider(engine):
    out = engine.translate(system=SHADES, code="R", reverse=True)
    assert get(out, "result") is True
    assert [(eq, c["code"]) for eq, c, _ in matches(out)] == [("equivalent", "red"), ("narrower", "crimson")]


def test_translate_unmatched_is_result_false_with_the_match(engine):
    out = engine.translate(url=CM, system=COLORS, code="navy")
    assert get(out, "result") is False
    assert matches(out) == [("unmatched", None, CM)]


def test_translate_no_mapping(engine):
    out = engine.translate(url=CM, system=COLORS, code="blue")
    assert get(out, "result") is False
    assert get(out, "message") == "No mapping found"


def test_translate_target_system_filter(engine):
    assert get(engine.translate(system=COLORS, code="red", target_system="http://other"), "result") is False


def test_translate_unknown_conceptmap_is_404(engine):
    with pytest.raises(FhirError) as e:
        engine.translate(url="http://example.org/ConceptMap/nope", system=COLORS, code="red")
    assert e.value.status == 404


def test_translate_shipped_dukcapil_marital_status_map(engine):
    cms = [cm for cm in engine.registry.concept_maps() if cm["url"].endswith("dukcapil-status-kawin-to-v3-marital-status")]
    if not cms:
        pytest.skip("Indonesian concept maps not present")
    group = cms[0]["group"][0]
    out = engine.translate(url=cms[0]["url"], system=group["source"], code="2")
    assert matches(out)[0][1]["code"] == "M"
    back = engine.translate(system=group["target"], code="M", reverse=True)
    assert any(c["code"] == "2" for _, c, _ in matches(back))


@pytest.mark.parametrize(
    "a, b, outcome",
    [
        ("32", "32", "equivalent"),
        ("32", "3204152003", "subsumes"),
        ("3204", "320415", "subsumes"),
        ("3204152003", "3204", "subsumed-by"),
        ("3204", "3273", "not-subsumed"),
        ("3204", "320", None),
    ],
)
def test_subsumes_on_region_hierarchy(engine, a, b, outcome):
    if outcome is None:
        with pytest.raises(FhirError) as e:
            engine.subsumes(REGIONS, a, b)
        assert e.value.status == 404
    else:
        assert get(engine.subsumes(REGIONS, a, b), "outcome") == outcome


def test_subsumes_on_dict_codesystem(engine):
    assert get(engine.subsumes(COLORS, "red", "crimson"), "outcome") == "subsumes"
    assert get(engine.subsumes(COLORS, "navy", "blue"), "outcome") == "subsumed-by"
    assert get(engine.subsumes(COLORS, "navy", "red"), "outcome") == "not-subsumed"
    assert get(engine.subsumes(COLORS, "Navy", "navy"), "outcome") == "equivalent"
