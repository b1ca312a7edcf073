"""R4 resource type registry and the required-binding value sets."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from fhir_server.model.types import R4_RESOURCE_TYPES, is_r4_resource_type
from terminology import r4_valuesets

ROOT = Path(__file__).resolve().parents[2]


def _generator():
    spec = importlib.util.spec_from_file_location("generate_r4_definitions", ROOT / "scripts" / "generate_r4_definitions.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("generate_r4_definitions", module)
    spec.loader.exec_module(module)
    return module


def test_r4_resource_types_include_the_core_types():
    assert {"Patient", "Encounter", "Coverage", "Bundle", "Parameters", "Binary"} <= R4_RESOURCE_TYPES


def test_r4_resource_types_include_r4_only_types():
    assert {"MedicinalProduct", "SubstanceNucleicAcid", "EffectEvidenceSynthesis", "RiskEvidenceSynthesis"} <= R4_RESOURCE_TYPES


def test_r4b_only_types_are_not_r4_resource_types():
    assert not {"SubscriptionTopic", "Citation", "Ingredient", "NutritionProduct"} & R4_RESOURCE_TYPES


def test_abstract_types_are_not_resource_types():
    assert not is_r4_resource_type("Resource")
    assert not is_r4_resource_type("DomainResource")


def test_is_r4_resource_type_rejects_non_strings():
    assert is_r4_resource_type("Patient")
    assert not is_r4_resource_type(None)
    assert not is_r4_resource_type(["Patient"])


def test_contains_checks_system_and_code():
    url = "http://hl7.org/fhir/ValueSet/administrative-gender"
    assert r4_valuesets.contains(url, "http://hl7.org/fhir/administrative-gender", "female") is True
    assert r4_valuesets.contains(url, "http://example.org/gender", "female") is False
    assert r4_valuesets.contains(url, "http://hl7.org/fhir/administrative-gender", "boy") is False


def test_contains_without_system_checks_the_code_alone():
    assert r4_valuesets.contains("http://hl7.org/fhir/ValueSet/administrative-gender", None, "unknown") is True


def test_version_suffix_on_the_canonical_is_accepted():
    url = "http://hl7.org/fhir/ValueSet/administrative-gender|4.0.1"
    assert r4_valuesets.contains(url, None, "male") is True


def test_value_set_drawing_from_several_systems_is_expanded():
    pairs = r4_valuesets.codes("http://hl7.org/fhir/ValueSet/event-timing")
    systems = {s for s, _ in pairs}
    assert {"http://hl7.org/fhir/event-timing", "http://terminology.hl7.org/CodeSystem/v3-TimingEvent"} <= systems
    assert ("http://terminology.hl7.org/CodeSystem/v3-TimingEvent", "AC") in pairs


def test_external_value_sets_are_not_enumerable():
    for url in (
        "http://hl7.org/fhir/ValueSet/mimetypes",
        "http://hl7.org/fhir/ValueSet/currencies",
        "http://hl7.org/fhir/ValueSet/ucum-units",
        "http://loinc.org/vs/LL379-9",
    ):
        assert r4_valuesets.contains(url, None, "x") is None
        assert r4_valuesets.codes(url) is None


def test_unknown_value_set_answers_none():
    assert r4_valuesets.contains("http://example.org/ValueSet/nope", None, "x") is None


def test_mime_type_syntax_check():
    url = "http://hl7.org/fhir/ValueSet/mimetypes|4.0.1"
    assert r4_valuesets.check_syntax(url, "application/fhir+json; charset=utf-8") is True
    assert r4_valuesets.check_syntax(url, "json") is True
    assert r4_valuesets.check_syntax(url, "fhir json") is False


def test_enumerable_value_set_has_no_syntax_check():
    assert r4_valuesets.check_syntax("http://hl7.org/fhir/ValueSet/administrative-gender", "male") is None


def test_every_required_binding_in_the_structures_has_a_value_set_record():
    from fhir_server.model.definitions import load_definitions

    bound = {el["binding"].split("|")[0] for t in load_definitions()["types"].values() for el in t["elements"] if "binding" in el}
    assert bound == set(r4_valuesets.urls())


def test_expander_handles_is_a_filters_imports_and_excludes():
    gen = _generator()
    codesystem = {
        "url": "http://example.org/cs",
        "content": "complete",
        "concept": [
            {"code": "animal", "concept": [{"code": "dog", "concept": [{"code": "puppy"}]}, {"code": "cat"}]},
            {"code": "plant", "property": [{"code": "parent", "valueCode": "animal"}]},
        ],
    }
    valuesets = [
        {
            "url": "http://example.org/vs/animals",
            "compose": {
                "include": [{"system": "http://example.org/cs", "filter": [{"property": "concept", "op": "is-a", "value": "animal"}]}]
            },
        },
        {
            "url": "http://example.org/vs/no-cats",
            "compose": {
                "include": [{"valueSet": ["http://example.org/vs/animals|1.0"]}],
                "exclude": [{"system": "http://example.org/cs", "concept": [{"code": "cat"}]}],
            },
        },
        {"url": "http://example.org/vs/expanded", "expansion": {"contains": [{"system": "http://example.org/cs", "code": "dog"}]}},
    ]
    expander = gen.Expander(valuesets, [codesystem])
    assert expander.expand("http://example.org/vs/animals") == {"http://example.org/cs": {"animal", "dog", "puppy", "cat", "plant"}}
    assert expander.expand("http://example.org/vs/no-cats|1.0") == {"http://example.org/cs": {"animal", "dog", "puppy", "plant"}}
    assert expander.expand("http://example.org/vs/expanded") == {"http://example.org/cs": {"dog"}}


def test_expander_marks_external_code_systems_not_enumerable():
    gen = _generator()
    expander = gen.Expander([{"url": "http://example.org/vs/mime", "compose": {"include": [{"system": "urn:ietf:bcp:13"}]}}], [])
    try:
        expander.expand("http://example.org/vs/mime")
    except gen.NotEnumerable as exc:
        assert exc.syntax == "mimetype"
    else:
        raise AssertionError("expected NotEnumerable")
