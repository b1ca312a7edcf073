"""Extensions whose url is an R4 core extension definition are checked against it.

R4 extensibility.html: an extension's url identifies its definition, which fixes the type of
its ``value[x]`` (or its sub-extensions, for a complex extension), where it may be used
(``context``) and whether it is a modifier (then it must be a ``modifierExtension``).
The R4 package defines 393 of them (hl7.fhir.r4.core 4.0.1); any other url (a national or
local extension such as SATUSEHAT's) is unknown here and only its generic shape is checked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fhir_server import jsonio
from fhir_server.model.extensions import core_extensions
from fhir_server.model.validate import status_for, validate_resource
from fhir_server.service.resources import stamp

SD = "http://hl7.org/fhir/StructureDefinition/"
OWN_PREFIX = SD + "humanname-own-prefix"
GEO = SD + "geolocation"
SYNTHEA = Path(__file__).resolve().parents[3] / "shared" / "data" / "synthea-10-patients"


def issues(resource: dict[str, Any]) -> list[tuple[str | None, str]]:
    return [(i.expression, i.diagnostics) for i in validate_resource(resource)]


def family_ext(*exts: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Patient", "name": [{"family": "van Beethoven", "_family": {"extension": list(exts)}}]}


def address_ext(*exts: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Patient", "address": [{"city": "Bandung", "extension": list(exts)}]}


def test_the_table_has_every_core_extension():
    by_url = core_extensions().by_url
    assert len(by_url) == 393
    assert by_url[OWN_PREFIX].types == ("string",)
    assert by_url[OWN_PREFIX].contexts == {"HumanName.family"}


# --------------------------------------------------------------------------- value types


def test_core_extension_with_its_value_type_is_valid():
    assert issues(family_ext({"url": OWN_PREFIX, "valueString": "van"})) == []


def test_core_extension_with_a_wrong_value_type_is_rejected():
    found = validate_resource(family_ext({"url": OWN_PREFIX, "valueCode": "van"}))
    assert [(i.code, i.expression, i.diagnostics) for i in found] == [
        (
            "structure",
            "Patient.name[0].family.extension[0].value.ofType(code)",
            f"The extension '{OWN_PREFIX}' takes a value of type string, not code",
        )
    ]
    assert status_for(found) == 400


def test_value_type_is_read_from_a_primitive_extension_only_value():
    ext = {"url": OWN_PREFIX, "_valueCode": {"extension": [{"url": "http://example.org/x", "valueString": "y"}]}}
    assert [e for e, _ in issues(family_ext(ext))] == ["Patient.name[0].family.extension[0].value.ofType(code)"]


def test_unknown_extensions_are_accepted_with_any_value():
    for ext in (
        {"url": "https://fhir.kemkes.go.id/r4/StructureDefinition/citizenshipStatus", "valueCode": "WNI"},
        {"url": "http://example.org/fhir/StructureDefinition/x", "valuePeriod": {"start": "2020"}},
        {"url": SD + "not-an-r4-extension", "valueCode": "x"},
    ):
        assert issues({"resourceType": "Patient", "extension": [ext]}) == [], ext


def test_simple_core_extension_with_nested_extensions_is_rejected():
    ext = {"url": OWN_PREFIX, "extension": [{"url": "a", "valueString": "b"}]}
    assert issues(family_ext(ext)) == [
        (
            "Patient.name[0].family.extension[0].extension[0]",
            f"The extension '{OWN_PREFIX}' is a simple extension with a value; it has no nested extensions",
        ),
        ("Patient.name[0].family.extension[0]", f"The extension '{OWN_PREFIX}' needs a value (string)"),
    ]


# --------------------------------------------------------------------------- complex extensions


def geo(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"url": GEO, "extension": list(parts)}


LAT = {"url": "latitude", "valueDecimal": -6.9}
LON = {"url": "longitude", "valueDecimal": 107.6}


def test_complex_core_extension_with_its_parts_is_valid():
    assert issues(address_ext(geo(LAT, LON))) == []


def test_complex_core_extension_with_a_value_is_rejected():
    ext = {"url": GEO, "valueString": "-6.9,107.6"}
    assert issues(address_ext(ext)) == [
        (
            "Patient.address[0].extension[0].value.ofType(string)",
            f"The extension '{GEO}' is a complex extension: it has sub-extensions, not a value",
        )
    ]


def test_sub_extension_with_a_wrong_value_type_is_rejected():
    assert issues(address_ext(geo({"url": "latitude", "valueString": "-6.9"}, LON))) == [
        (
            "Patient.address[0].extension[0].extension[0].value.ofType(string)",
            "The sub-extension 'latitude' takes a value of type decimal, not string",
        )
    ]


def test_missing_required_sub_extension_is_rejected():
    assert issues(address_ext(geo(LAT))) == [
        ("Patient.address[0].extension[0]", f"The extension '{GEO}' needs the sub-extension 'longitude'")
    ]


def test_repeated_sub_extension_beyond_its_max_is_rejected():
    assert issues(address_ext(geo(LAT, LON, LAT))) == [
        ("Patient.address[0].extension[0].extension[2]", f"The extension '{GEO}' allows at most 1 'latitude' sub-extension(s)")
    ]


def test_other_sub_extensions_are_allowed_by_open_slicing():
    assert issues(address_ext(geo(LAT, LON, {"url": "altitude", "valueDecimal": 700}))) == []


def test_nested_complex_parts_are_checked():
    history = {
        "url": SD + "codesystem-history",
        "extension": [{"url": "revision", "extension": [{"url": "date", "valueDateTime": "2020"}, {"url": "id", "valueCode": "1"}]}],
    }
    cs = {"resourceType": "CodeSystem", "status": "active", "content": "complete", "extension": [history]}
    assert issues(cs) == [
        (
            "CodeSystem.extension[0].extension[0].extension[1].value.ofType(code)",
            "The sub-extension 'id' takes a value of type string, not code",
        ),
        ("CodeSystem.extension[0].extension[0]", "The extension 'revision' needs the sub-extension 'author'"),
    ]


# --------------------------------------------------------------------------- context


def test_core_extension_outside_its_context_is_rejected():
    patient = {"resourceType": "Patient", "extension": [{"url": OWN_PREFIX, "valueString": "van"}]}
    assert issues(patient) == [
        ("Patient.extension[0]", f"The extension '{OWN_PREFIX}' is not allowed here: its definition allows it on HumanName.family")
    ]


def test_resource_context():
    birth_place = {"url": SD + "patient-birthPlace", "valueAddress": {"city": "Bandung"}}
    assert issues({"resourceType": "Patient", "extension": [birth_place]}) == []
    assert [e for e, _ in issues({"resourceType": "Practitioner", "extension": [birth_place]})] == ["Practitioner.extension[0]"]


def test_element_path_context_on_a_primitive():
    birth_time = {"url": SD + "patient-birthTime", "valueDateTime": "2000-01-01T10:00:00+07:00"}
    assert issues({"resourceType": "Patient", "birthDate": "2000-01-01", "_birthDate": {"extension": [birth_time]}}) == []
    assert [
        e for e, _ in issues({"resourceType": "Practitioner", "birthDate": "2000-01-01", "_birthDate": {"extension": [birth_time]}})
    ] == ["Practitioner.birthDate.extension[0]"]


def test_type_context_admits_derived_types():
    # rendering-markdown is defined on string; a code is a string (R4 datatypes.html)
    ext = {"url": SD + "rendering-markdown", "valueMarkdown": "**male**"}
    assert issues({"resourceType": "Patient", "gender": "male", "_gender": {"extension": [ext]}}) == []
    assert [e for e, _ in issues({"resourceType": "Patient", "birthDate": "2000", "_birthDate": {"extension": [ext]}})] == [
        "Patient.birthDate.extension[0]"
    ]


def test_data_type_context_anywhere_that_type_is_used():
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "subject": {"reference": "Patient/1"},
        "valueQuantity": {"value": 1},
    }
    # geolocation is defined on Address: inside Patient.contact.address too
    patient = {"resourceType": "Patient", "contact": [{"address": {"city": "Bandung", "extension": [geo(LAT, LON)]}}]}
    assert issues(patient) == []
    obs["code"]["extension"] = [geo(LAT, LON)]
    assert [e for e, _ in issues(obs)] == ["Observation.code.extension[0]"]


def test_element_and_resource_contexts():
    absent = {"url": SD + "data-absent-reason", "valueCode": "unknown"}
    assert issues({"resourceType": "Patient", "name": [{"_family": {"extension": [absent]}}], "extension": [absent]}) == []
    goal = {"url": SD + "resource-pertainsToGoal", "valueReference": {"reference": "Goal/1"}}
    assert issues({"resourceType": "Patient", "extension": [goal]}) == []
    assert [e for e, _ in issues({"resourceType": "Patient", "name": [{"family": "x", "extension": [goal]}]})] == [
        "Patient.name[0].extension[0]"
    ]


def test_context_reaches_nested_items_through_their_content_reference():
    # maxValue is defined on Questionnaire.item only; item.item reuses Questionnaire.item
    max_value = {"url": SD + "maxValue", "valueInteger": 10}
    item = {"linkId": "1.1", "type": "integer", "extension": [max_value]}
    questionnaire = {"resourceType": "Questionnaire", "status": "active", "item": [{"linkId": "1", "type": "group", "item": [item]}]}
    assert issues(questionnaire) == []


def test_context_in_contained_resources_and_bundle_entries():
    birth_place = {"url": SD + "patient-birthPlace", "valueAddress": {"city": "Bandung"}}
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"resource": {"resourceType": "Patient", "extension": [birth_place]}},
            {"resource": {"resourceType": "Organization", "extension": [birth_place]}},
        ],
    }
    assert [e for e, _ in issues(bundle)] == ["Bundle.entry[1].resource.extension[0]"]
    org = {"resourceType": "Organization", "contained": [{"resourceType": "Patient", "extension": [birth_place]}]}
    assert issues(org) == []


# --------------------------------------------------------------------------- modifier extensions


def test_modifier_extension_must_be_a_modifier_extension():
    do_not = {"url": SD + "request-doNotPerform", "valueBoolean": True}
    order = {
        "resourceType": "NutritionOrder",
        "status": "active",
        "intent": "order",
        "patient": {"reference": "Patient/1"},
        "dateTime": "2020",
    }
    assert issues({**order, "modifierExtension": [do_not]}) == []
    assert issues({**order, "extension": [do_not]}) == [
        (
            "NutritionOrder.extension[0]",
            f"The extension '{SD}request-doNotPerform' is a modifier extension: it belongs in modifierExtension",
        )
    ]


def test_non_modifier_extension_must_not_be_a_modifier_extension():
    birth_place = {"url": SD + "patient-birthPlace", "valueAddress": {"city": "Bandung"}}
    assert issues({"resourceType": "Patient", "modifierExtension": [birth_place]}) == [
        ("Patient.modifierExtension[0]", f"The extension '{SD}patient-birthPlace' is not a modifier extension: it belongs in extension")
    ]


# --------------------------------------------------------------------------- real data stays valid


def test_satusehat_examples_with_core_extensions_stay_valid():
    examples = Path(__file__).parent / "examples"
    for path in examples.glob("*.json"):
        assert validate_resource(jsonio.loads(path.read_bytes())) == [], path.name


@pytest.mark.skipif(not SYNTHEA.is_dir(), reason="the shared Synthea sample is not beside the checkout")
def test_synthea_sample_stays_valid():
    """7,160 Synthea resources with geolocation, patient-birthPlace and patient-mothersMaidenName."""
    count = 0
    for path in sorted(SYNTHEA.glob("*.ndjson")):
        for line in path.read_bytes().splitlines():
            resource = jsonio.loads(line)
            assert validate_resource(stamp(resource, resource["id"], 1, 0)) == [], (path.name, resource["id"])
            count += 1
    assert count == 7160
