"""A primitive and its ``_name`` part are one element (R4 json.html#primitive); ele-1 holds for it.

ele-1 (R4 element.html): ``hasValue() or (children().count() > id.count())``: an element
must have a value or a child other than ``id``. In JSON the value is in ``given`` and the
id/extensions in ``_given``; for a repeating primitive the two arrays are aligned, with
``null`` where a position has no value or no id/extensions. So ``"_given": [{"id": "a"}]``
next to ``"given": ["x"]`` is an element with a value and an id (valid), while an ``_given``
entry with only an id and no value at its position breaks ele-1; a position that is null in
both arrays is no element at all.
"""

from __future__ import annotations

from typing import Any

import pytest

from fhir_server.model.structure import check_structure
from fhir_server.model.validate import validate_resource

EXT = {"url": "http://example.org/fhir/StructureDefinition/note", "valueString": "n"}


def name(**parts: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "name": [parts]}


def issues(resource: dict[str, Any]) -> list[tuple[str | None, str]]:
    return [(i.expression, i.diagnostics) for i in validate_resource(resource)]


# --------------------------------------------------------------------------- repeating


def test_value_with_an_id_only_part_is_valid():
    assert issues(name(given=["a"], _given=[{"id": "test"}])) == []


def test_several_values_with_id_only_parts_are_valid():
    assert issues(name(given=["a", "b"], _given=[{"id": "g1"}, None])) == []
    assert issues(name(given=["a", "b"], _given=[None, {"id": "g2"}])) == []


def test_null_value_with_an_extension_and_a_value_without_one_are_valid():
    assert issues(name(given=[None, "b"], _given=[{"extension": [EXT]}, None])) == []


def test_extension_only_positions_without_a_value_array_are_valid():
    assert issues(name(_given=[{"extension": [EXT]}])) == []


def test_null_in_both_arrays_is_rejected_once():
    assert issues(name(given=[None], _given=[None])) == [
        ("Patient.name[0].given[0]", "null is only allowed where '_given' has an extension at the same index")
    ]


def test_id_only_part_without_a_value_breaks_ele_1():
    assert issues(name(given=[None, "b"], _given=[{"id": "g1"}, None])) == [
        ("Patient.name[0].given[0]", "An element must have a value or children besides 'id' (ele-1)")
    ]


def test_id_only_part_without_any_value_array_breaks_ele_1():
    assert issues(name(_given=[{"id": "g1"}])) == [
        ("Patient.name[0].given[0]", "An element must have a value or children besides 'id' (ele-1)")
    ]


def test_null_part_without_a_value_array_is_rejected():
    assert issues(name(_given=[None])) == [("Patient.name[0].given[0]", "null is only allowed where the value array has a value")]


def test_misaligned_arrays_are_rejected():
    assert ("Patient.name[0].given", "Array '_given' must have the same length as 'given'") in issues(
        name(given=["a", "b"], _given=[{"id": "g"}])
    )


# --------------------------------------------------------------------------- single


def test_single_value_with_an_id_only_part_is_valid():
    assert issues({"resourceType": "Patient", "birthDate": "2000-01-01", "_birthDate": {"id": "bd"}}) == []


def test_single_id_only_part_without_a_value_breaks_ele_1():
    assert issues({"resourceType": "Patient", "_birthDate": {"id": "bd"}}) == [
        ("Patient.birthDate", "An element must have a value or children besides 'id' (ele-1)")
    ]


def test_single_extension_only_part_without_a_value_is_valid():
    assert issues({"resourceType": "Patient", "_birthDate": {"extension": [EXT]}}) == []


def test_choice_value_with_an_id_only_part_is_valid():
    assert issues({"resourceType": "Patient", "deceasedBoolean": False, "_deceasedBoolean": {"id": "d"}}) == []
    assert issues({"resourceType": "Patient", "_deceasedBoolean": {"id": "d"}}) == [
        ("Patient.deceased.ofType(boolean)", "An element must have a value or children besides 'id' (ele-1)")
    ]


def test_extension_value_with_an_id_only_part_is_valid():
    ext = {"url": "http://example.org/fhir/StructureDefinition/x", "valueString": "a", "_valueString": {"id": "v"}}
    assert issues({"resourceType": "Patient", "extension": [ext]}) == []


# --------------------------------------------------------------------------- complex elements keep ele-1


@pytest.mark.parametrize(
    ("resource", "where"),
    [
        ({"resourceType": "Patient", "maritalStatus": {"id": "m"}}, "Patient.maritalStatus"),
        ({"resourceType": "Patient", "contact": [{"id": "c"}]}, "Patient.contact[0]"),
        (
            {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "valueQuantity": {"id": "q"}},
            "Observation.value.ofType(Quantity)",
        ),
        ({"resourceType": "Bundle", "type": "collection", "entry": [{"id": "e"}]}, "Bundle.entry[0]"),
        (
            {
                "resourceType": "Bundle",
                "type": "collection",
                "entry": [{"resource": {"resourceType": "Patient", "contact": [{"id": "c"}]}}],
            },
            "Bundle.entry[0].resource.contact[0]",
        ),
        (
            {"resourceType": "Patient", "contained": [{"resourceType": "Patient", "contact": [{"id": "c"}]}]},
            "Patient.contained[0].contact[0]",
        ),
    ],
)
def test_complex_element_with_only_an_id_breaks_ele_1(resource, where):
    assert [(i.expression, i.diagnostics) for i in check_structure(resource)] == [
        (where, "An element must have a value or children besides 'id' (ele-1)")
    ]


def test_a_resource_with_only_an_id_is_no_element():
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {"resourceType": "Patient", "id": "p"}}]}
    assert check_structure(bundle) == []
