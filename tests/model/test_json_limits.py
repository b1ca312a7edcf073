"""check_json: the limits on any JSON body, and where its issues point.

A control character in a resource is reported at the element that holds it, as FHIRPath
(R4 operationoutcome.html: issue.expression), like every other validation issue; a body
that is no resource (a JSON Patch) has no FHIRPath, so the place is named in the text.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fhir_server.errors import FhirError
from fhir_server.model.limits import check_json


def fail(value: Any, *, max_depth: int = 50, max_elements: int = 10_000) -> tuple[int, str, str | None]:
    with pytest.raises(FhirError) as err:
        check_json(value, max_depth=max_depth, max_elements=max_elements)
    issue = err.value.issues[0]
    return err.value.status, issue.diagnostics, issue.expression


def test_valid_json_passes():
    check_json({"resourceType": "Patient", "name": [{"given": ["a\tb\n"]}]}, max_depth=10, max_elements=100)


def test_control_character_in_a_choice_value_is_named_as_fhirpath():
    patient = {"resourceType": "Patient", "extension": [{"url": "http://example.org/x", "valueString": "a\x00b"}]}
    status, _, expression = fail(patient)
    assert (status, expression) == (400, "Patient.extension[0].value.ofType(string)")


def test_control_character_in_a_primitive_extension_and_a_repeating_value():
    patient = {
        "resourceType": "Patient",
        "name": [{"given": ["a", "b\x01"], "_given": [{"extension": [{"url": "http://example.org/x", "valueCode": "c"}]}, None]}],
    }
    assert fail(patient)[2] == "Patient.name[0].given[1]"
    patient["name"][0]["given"][1] = "b"
    patient["name"][0]["_given"][0]["extension"][0]["valueCode"] = "c\x02"
    assert fail(patient)[2] == "Patient.name[0].given[0].extension[0].value.ofType(code)"


def test_control_character_in_a_bundle_entry():
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": {"resourceType": "Patient", "name": [{"family": "x\x1f"}]}}],
    }
    assert fail(bundle)[2] == "Bundle.entry[0].resource.name[0].family"


def test_control_character_in_a_key_points_at_the_object_holding_it():
    status, diagnostics, expression = fail({"resourceType": "Patient", "name": [{"fam\x00ily": "x"}]})
    assert (status, diagnostics, expression) == (400, "A JSON key contains a control character", "Patient.name[0]")


def test_too_deep_points_at_the_first_element_too_deep():
    patient = {"resourceType": "Patient", "contact": [{"name": {"given": ["a"]}}]}
    status, diagnostics, expression = fail(patient, max_depth=4)
    assert status == 400 and "nested deeper than 4 levels" in diagnostics
    assert expression == "Patient.contact[0].name.given"


def test_too_many_values_is_413():
    assert fail({"resourceType": "Patient", "name": [{"given": ["a"] * 30}]}, max_elements=20)[0] == 413


def test_json_that_is_no_resource_names_the_place_in_the_text():
    patch = [{"op": "replace", "path": "/name/0/family", "value": "x\x00"}]
    status, diagnostics, expression = fail(patch)
    assert (status, expression) == (400, None)
    assert diagnostics.endswith("(at [0].value)")


# -- the shortcut with the JSON text: the same verdict as the full walk, on any JSON ------------------

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(alphabet="ab\x01\\", max_size=2), inner, max_size=3),
    max_leaves=25,
)


def _verdict(value: Any, raw: bytes | None, max_depth: int, max_elements: int) -> tuple[int, str] | None:
    try:
        check_json(value, max_depth=max_depth, max_elements=max_elements, raw=raw)
    except FhirError as exc:
        return exc.status, exc.issues[0].diagnostics
    return None


@settings(max_examples=400, deadline=None)
@given(_json, st.integers(min_value=0, max_value=6), st.integers(min_value=1, max_value=40))
def test_the_json_text_shortcut_gives_the_full_walks_verdict(value: Any, max_depth: int, max_elements: int) -> None:
    raw = orjson.dumps(value)
    assert _verdict(value, raw, max_depth, max_elements) == _verdict(value, None, max_depth, max_elements)


def test_an_escaped_control_character_is_still_refused_with_the_json_text() -> None:
    raw = b'{"resourceType": "Patient", "gender": "ma\\u0000le"}'
    status, diagnostics = _verdict(orjson.loads(raw), raw, 50, 10_000) or (0, "")
    assert status == 400 and "control character" in diagnostics
