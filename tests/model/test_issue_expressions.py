"""OperationOutcome.issue.expression of validation issues: FHIRPath that names the element.

R4 operationoutcome.html: ``expression`` is "a simple FHIRPath limited to element names,
repetition indicators and the default child accessor that identifies one of the elements
in the resource that caused this issue to be raised". In FHIRPath a choice element is
``value`` with the type chosen by ``ofType()`` (fhirpath.html#polymorphism; the HL7
validator writes ``Observation.value.ofType(Quantity)``); the JSON ``_given`` part of a
primitive is no element of its own (json.html#primitive): its id and extensions are
children of ``given``. A JSON property the model does not have names no element, so the
issue points at the element that holds it, as the HL7 validator's JSON parser does.

The last tests mutate valid resources one value at a time and check, with fhirpathpy, that
every issue's expression parses and selects the value that was broken.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fhirpathpy import evaluate
from fhirpathpy.models import models

from fhir_server.model.structure import check_structure, expression_at
from fhir_server.model.validate import model_issues, validate_resource

EXAMPLES = Path(__file__).parent / "examples"


def _example(name: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / f"{name}.json").read_text(encoding="utf-8"))


def expressions(resource: dict[str, Any]) -> list[str | None]:
    return [i.expression for i in check_structure(resource)]


# --------------------------------------------------------------------------- choice elements


def test_parameters_value_boolean_is_written_with_of_type():
    params = {"resourceType": "Parameters", "parameter": [{"name": "a", "valueBoolean": "yes"}]}
    assert expressions(params) == ["Parameters.parameter[0].value.ofType(boolean)"]


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        (
            {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "valueQuantity": {"value": "1"}},
            "Observation.value.ofType(Quantity).value",
        ),
        (
            {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "effectiveDateTime": "2020-13-01"},
            "Observation.effective.ofType(dateTime)",
        ),
        (
            {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "effectivePeriod": {"start": "x"}},
            "Observation.effective.ofType(Period).start",
        ),
        (
            {"resourceType": "Condition", "subject": {"reference": "Patient/1"}, "onsetAge": {"value": True}},
            "Condition.onset.ofType(Age).value",
        ),
        ({"resourceType": "Patient", "deceasedBoolean": "no"}, "Patient.deceased.ofType(boolean)"),
        ({"resourceType": "Patient", "deceasedDateTime": "yesterday"}, "Patient.deceased.ofType(dateTime)"),
        ({"resourceType": "Patient", "multipleBirthInteger": "2"}, "Patient.multipleBirth.ofType(integer)"),
        (
            {"resourceType": "Patient", "extension": [{"url": "http://example.org/x", "valueDecimal": "1.5"}]},
            "Patient.extension[0].value.ofType(decimal)",
        ),
        (
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "x"},
                "component": [{"code": {"text": "c"}, "valueCodeableConcept": {"coding": [{"system": 1}]}}],
            },
            "Observation.component[0].value.ofType(CodeableConcept).coding[0].system",
        ),
    ],
)
def test_every_choice_element_is_written_with_of_type(resource, expected):
    assert expressions(resource) == [expected]


def test_primitive_extension_of_a_choice_value_is_the_choice_element():
    patient = {
        "resourceType": "Patient",
        "deceasedDateTime": "2020-01-01",
        "_deceasedDateTime": {"extension": [{"url": "http://example.org/x", "valueString": ""}]},
    }
    assert expressions(patient) == ["Patient.deceased.ofType(dateTime).extension[0].value.ofType(string)"]


def test_second_choice_variant_is_named_with_of_type():
    issues = check_structure({"resourceType": "Patient", "deceasedBoolean": True, "deceasedDateTime": "2020-01-01"})
    assert [(i.expression, i.diagnostics) for i in issues] == [
        ("Patient.deceased.ofType(dateTime)", "Only one deceased[x] is allowed, found 'deceasedBoolean' and 'deceasedDateTime'")
    ]


def test_missing_required_choice_element_is_named_by_its_stem():
    # MedicationRequest.medication[x] is 1..1: "medication[x]" is no FHIRPath
    issue = check_structure(
        {"resourceType": "MedicationRequest", "status": "active", "intent": "order", "subject": {"reference": "Patient/1"}}
    )
    assert [(i.code, i.expression, i.diagnostics) for i in issue] == [
        ("required", "MedicationRequest.medication", "Missing required element 'medication[x]'")
    ]


def test_narrative_div_is_delimited_because_div_is_a_fhirpath_operator():
    # R4 dom-6 writes it text.`div`; text.div does not parse
    assert expressions({"resourceType": "Patient", "text": {"status": "generated"}}) == ["Patient.text.`div`"]
    bad = {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml"><script>x</script></div>'}
    assert expressions({"resourceType": "Patient", "text": bad}) == ["Patient.text.`div`"]


# --------------------------------------------------------------------------- extensions and '_' parts


def test_underscore_sibling_of_a_complex_element_points_at_the_element_holding_it():
    patient = {"resourceType": "Patient", "_name": {"extension": [{"url": "http://example.org/x", "valueString": "a"}]}}
    issues = check_structure(patient)
    assert [(i.expression, i.diagnostics) for i in issues] == [
        ("Patient", "Element '_name' is not allowed: only primitive elements have a '_' sibling")
    ]


def test_extension_inside_a_complex_element():
    patient = {"resourceType": "Patient", "name": [{"family": "A", "extension": [{"url": "http://example.org/x", "valueCode": " x"}]}]}
    assert expressions(patient) == ["Patient.name[0].extension[0].value.ofType(code)"]


def test_extension_on_a_primitive_is_a_child_of_the_primitive():
    patient = {
        "resourceType": "Patient",
        "birthDate": "2000-01-01",
        "_birthDate": {"extension": [{"url": "http://example.org/x", "valueInteger": 1.5}]},
    }
    assert expressions(patient) == ["Patient.birthDate.extension[0].value.ofType(integer)"]


def test_extension_on_a_repeating_primitive_is_indexed_like_the_value():
    name = {"given": ["a", "b"], "_given": [None, {"extension": [{"url": "http://example.org/x", "valueBoolean": "y"}]}]}
    assert expressions({"resourceType": "Patient", "name": [name]}) == ["Patient.name[0].given[1].extension[0].value.ofType(boolean)"]


def test_unknown_element_points_at_its_parent_and_names_the_property():
    issues = check_structure({"resourceType": "Patient", "contact": [{"nickname": "x"}]})
    assert [(i.expression, i.diagnostics) for i in issues] == [("Patient.contact[0]", "Unknown element 'nickname'")]


def test_unknown_choice_type_points_at_its_parent():
    # valueCodeableReference is R5: no element of R4, so no ofType() either
    ext = {"url": "http://example.org/x", "valueCodeableReference": {"concept": {"text": "a"}}}
    issues = check_structure({"resourceType": "Patient", "extension": [ext]})
    assert [(i.expression, i.diagnostics) for i in issues] == [("Patient.extension[0]", "Unknown element 'valueCodeableReference'")]


# --------------------------------------------------------------------------- nested resources (the sweep)


def test_contained_resource_elements_are_under_contained():
    patient = {
        "resourceType": "Patient",
        "contained": [{"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "valueBoolean": 1}],
    }
    assert expressions(patient) == ["Patient.contained[0].value.ofType(boolean)"]


def test_bundle_entry_resources_are_under_entry_resource():
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "valueQuantity": {"value": "1"}}
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {"resourceType": "Patient"}}, {"resource": obs}]}
    assert expressions(bundle) == ["Bundle.entry[1].resource.value.ofType(Quantity).value"]


def test_nested_backbone_elements_and_content_references():
    questionnaire = {
        "resourceType": "Questionnaire",
        "status": "active",
        "item": [{"linkId": "1", "type": "group", "item": [{"linkId": "1.1", "type": "string", "initialString": 5}]}],
    }
    # Questionnaire.item.initial[x] is R4B; in R4 the child is initial.value[x]
    assert expressions(questionnaire) == ["Questionnaire.item[0].item[0]"]
    questionnaire["item"][0]["item"][0] = {"linkId": "1.1", "type": "string", "initial": [{"valueString": 5}]}
    assert expressions(questionnaire) == ["Questionnaire.item[0].item[0].initial[0].value.ofType(string)"]


def test_parameters_part_and_resource():
    params = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "a", "part": [{"name": "b", "valueUri": " x"}]},
            {"name": "c", "resource": {"resourceType": "Patient", "deceasedBoolean": 0}},
        ],
    }
    assert expressions(params) == [
        "Parameters.parameter[0].part[0].value.ofType(uri)",
        "Parameters.parameter[1].resource.deceased.ofType(boolean)",
    ]


def test_nested_resource_without_resource_type_points_at_its_element():
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {"id": "x"}}]}
    assert [(i.expression, i.diagnostics) for i in check_structure(bundle)] == [("Bundle.entry[0].resource", "Missing resourceType")]


# --------------------------------------------------------------------------- the R4B model's paths


def test_model_issue_paths_use_of_type_and_drop_underscores():
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "_status": {"extension": [{"url": "http://example.org/x", "valueInteger": "a"}]},
        "code": {"text": "x"},
        "valueQuantity": {"value": "x"},
    }
    assert sorted(i.expression for i in model_issues(observation)) == [
        "Observation.status.extension[0].value.ofType(integer)",
        "Observation.value.ofType(Quantity).value",
    ]


def test_model_issue_paths_in_contained_resources_and_bundle_entries():
    patient = {"resourceType": "Patient", "contained": [{"resourceType": "Organization", "active": "x"}]}
    assert [i.expression for i in model_issues(patient)] == ["Patient.contained[0].active"]
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "a"}, "valueBoolean": "x"}
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": obs}]}
    assert [i.expression for i in model_issues(bundle)] == ["Bundle.entry[0].resource.value.ofType(boolean)"]


def test_r4_only_extension_values_are_still_not_reported_by_the_r4b_model():
    patient = {
        "resourceType": "Patient",
        "extension": [
            {"url": "http://example.org/a", "valueMeta": {"versionId": "1"}},
            {"url": "http://example.org/b", "valueString": "x", "_valueString": {"id": "v"}},
        ],
    }
    assert validate_resource(patient) == []


@pytest.mark.parametrize(
    ("loc", "expected"),
    [
        ((), "Patient"),
        (("name", 0, "_given", 1), "Patient.name[0].given[1]"),
        (("name", 0, "given"), "Patient.name[0].given"),
        (("deceasedBoolean",), "Patient.deceased.ofType(boolean)"),
        (("_birthDate", "extension", 0, "valueCode"), "Patient.birthDate.extension[0].value.ofType(code)"),
        (("foo", "bar"), "Patient"),
        (("name", 7, "given"), "Patient.name"),
        (("contained", 0, "active"), "Patient.contained[0].active"),
    ],
)
def test_expression_at_translates_json_locations(loc, expected):
    patient = {
        "resourceType": "Patient",
        "name": [{"given": ["a", "b"], "_given": [None, {"id": "x"}]}],
        "deceasedBoolean": True,
        "birthDate": "2000",
        "_birthDate": {"extension": [{"url": "http://example.org/x", "valueCode": "c"}]},
        "contained": [{"resourceType": "Organization", "active": "x"}],
    }
    assert expression_at(patient, loc) == expected


def test_expression_at_needs_a_resource():
    assert expression_at({"op": "add"}, ("op",)) is None
    assert expression_at([1], (0,)) is None


# --------------------------------------------------------------------------- every expression selects the element


def _seeds() -> list[dict[str, Any]]:
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}], "text": "Heart rate"},
        "subject": {"reference": "Patient/1"},
        "effectivePeriod": {"start": "2024-01-01T10:00:00+07:00"},
        "valueQuantity": {"value": 60, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"},
        "component": [
            {"code": {"text": "c"}, "valueString": "x", "_valueString": {"extension": [{"url": "http://example.org/e", "valueInteger": 3}]}}
        ],
        "contained": [
            {"resourceType": "Practitioner", "id": "pr", "active": True, "name": [{"given": ["A", "B"], "_given": [None, {"id": "g"}]}]}
        ],
    }
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"fullUrl": "urn:uuid:1", "resource": copy.deepcopy(observation)}]}
    params = {
        "resourceType": "Parameters",
        "parameter": [{"name": "a", "valueBoolean": True}, {"name": "b", "part": [{"name": "c", "valueDate": "2020"}]}],
    }
    return [_example("patient_satusehat"), _example("encounter_satusehat"), _example("coverage_bpjs"), observation, bundle, params]


def _leaves(node: Any, loc: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key != "resourceType":
                yield from _leaves(value, (*loc, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _leaves(value, (*loc, i))
    elif node is not None:
        yield loc, node


def _set(resource: dict[str, Any], loc: tuple[Any, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(resource)
    node: Any = out
    for part in loc[:-1]:
        node = node[part]
    node[loc[-1]] = value
    return out


def _selected(resource: dict[str, Any], expression: str) -> list[Any]:
    result = evaluate(resource, expression, {}, models["r4"])
    if not result and (".extension" in expression or ".id" in expression):
        # fhirpathpy drops the '_given' part when a repeating primitive is indexed
        # (given[1].extension); the unindexed form finds the same nodes
        result = evaluate(resource, re.sub(r"\[\d+\](?=\.(extension|id)\b)", "", expression), {}, models["r4"])
    return result


def test_every_issue_expression_selects_the_broken_value():
    """Break each primitive of the seeds in turn: the issue must point at exactly that value."""
    checked = 0
    for seed in _seeds():
        assert check_structure(seed) == [], seed["resourceType"]
        for loc, _ in _leaves(seed):
            mutant = _set(seed, loc, {"broken": [1]})  # an object where a primitive belongs
            issues = check_structure(mutant)
            assert issues, loc
            for issue in issues:
                selected = _selected(mutant, issue.expression)
                assert {"broken": [1]} in selected, (loc, issue)
                checked += 1
    assert checked > 150


def test_every_unknown_property_points_at_the_object_holding_it():
    for seed in _seeds():
        objects = [()] + [loc[:-1] for loc, _ in _leaves(seed) if isinstance(loc[-1], str)]
        for parent in set(objects):
            mutant = copy.deepcopy(seed)
            node: Any = mutant
            for part in parent:
                node = node[part]
            node["zzUnknown"] = True
            issues = check_structure(mutant)
            assert [i.diagnostics for i in issues] == ["Unknown element 'zzUnknown'"], parent
            selected = _selected(mutant, issues[0].expression)
            twin = next((i for i, p in enumerate(parent) if isinstance(p, str) and p.startswith("_")), None)
            if twin is not None and twin == len(parent) - 1 - isinstance(parent[-1], int):
                # the '_given' part of a primitive: FHIRPath selects the primitive (its value)
                value: Any = mutant
                for part in (*parent[:twin], parent[twin][1:], *parent[twin + 1 :]):
                    value = value[part] if isinstance(value, (dict, list)) else None
                assert value in selected, (parent, issues)
            else:
                assert any(isinstance(n, dict) and n.get("zzUnknown") is True for n in selected), (parent, issues)


def test_every_model_issue_expression_selects_the_broken_value():
    """The same for the R4B model's errors (a number where a string belongs)."""
    checked = 0
    for seed in _seeds():
        for loc, value in _leaves(seed):
            if not isinstance(value, str):
                continue
            mutant = _set(seed, loc, 12345)
            for issue in model_issues(mutant):
                assert 12345 in _selected(mutant, issue.expression), (loc, issue)
                checked += 1
    assert checked > 50
