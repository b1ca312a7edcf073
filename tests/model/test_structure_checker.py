"""check_structure: the table-driven R4 (4.0.1) structural checker."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

from fhir_server.errors import Issue
from fhir_server.model.structure import check_structure

EXAMPLES = Path(__file__).parent / "examples"
XHTML_NS = 'xmlns="http://www.w3.org/1999/xhtml"'


@cache
def _example(name: str) -> str:
    return (EXAMPLES / f"{name}.json").read_text(encoding="utf-8")


def example(name: str) -> dict[str, Any]:
    """A fresh copy of a valid example (patient_satusehat, encounter_satusehat, coverage_bpjs)."""
    return json.loads(_example(name))


def patient(**changes: Any) -> dict[str, Any]:
    resource = example("patient_satusehat")
    resource.update(changes)
    return resource


def only_issue(resource: Any) -> Issue:
    issues = check_structure(resource)
    assert len(issues) == 1, issues
    return issues[0]


# --------------------------------------------------------------------------- valid resources


def test_satusehat_patient_with_extensions_and_birthdate_extension_is_valid():
    assert check_structure(example("patient_satusehat")) == []


def test_satusehat_encounter_is_valid():
    assert check_structure(example("encounter_satusehat")) == []


def test_bpjs_coverage_is_valid():
    assert check_structure(example("coverage_bpjs")) == []


def test_minimal_patient_is_valid():
    assert check_structure({"resourceType": "Patient"}) == []


def test_r4_only_medicinal_product_is_accepted():
    product = {
        "resourceType": "MedicinalProduct",
        "id": "paracetamol-500",
        "identifier": [{"system": "https://fhir.kemkes.go.id/id/kfa", "value": "93000001"}],
        "name": [
            {
                "productName": "Paracetamol 500 mg tablet",
                "countryLanguage": [
                    {
                        "country": {"coding": [{"system": "urn:iso:std:iso:3166", "code": "ID"}]},
                        "language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "id"}]},
                    }
                ],
            }
        ],
    }
    assert check_structure(product) == []


def test_r4_only_medicinal_product_still_needs_its_required_elements():
    issue = only_issue({"resourceType": "MedicinalProduct", "id": "x"})
    assert (issue.code, issue.expression) == ("required", "MedicinalProduct.name")


# --------------------------------------------------------------------------- resourceType


def test_missing_resource_type_is_rejected():
    issue = only_issue({"id": "p1", "gender": "male"})
    # no element to point at: the object is not a resource yet
    assert (issue.code, issue.expression) == ("required", None)
    assert issue.diagnostics == "Missing resourceType"


def test_r4b_only_resource_type_is_rejected():
    issue = only_issue({"resourceType": "SubscriptionTopic", "url": "http://example.org/topic", "status": "active"})
    assert issue.expression is None
    assert "not a FHIR R4 (4.0.1) resource type" in issue.diagnostics


def test_r4b_only_citation_is_rejected():
    assert only_issue({"resourceType": "Citation", "status": "active"}).expression is None


def test_unknown_resource_type_is_rejected():
    assert "'Patiente'" in only_issue({"resourceType": "Patiente"}).diagnostics


def test_abstract_resource_type_is_rejected():
    assert only_issue({"resourceType": "DomainResource"}).expression is None


def test_non_object_resource_is_rejected():
    assert only_issue([{"resourceType": "Patient"}]).diagnostics == "Expected a JSON object for a resource, got array"


# --------------------------------------------------------------------------- unknown elements


def test_unknown_top_level_element_is_rejected():
    issue = only_issue(patient(foo=1))
    assert (issue.code, issue.expression, issue.diagnostics) == ("structure", "Patient", "Unknown element 'foo'")


def test_unknown_nested_element_has_indexed_path():
    resource = patient()
    resource["name"][0]["nickname"] = "Bud"
    assert only_issue(resource).expression == "Patient.name[0]"


def test_fhir_comments_is_rejected():
    assert only_issue(patient(fhir_comments=["hello"])).expression == "Patient"


def test_underscore_sibling_of_complex_element_is_rejected():
    issue = only_issue(patient(_maritalStatus={"extension": [{"url": "http://x", "valueString": "y"}]}))
    assert issue.expression == "Patient"


def test_underscore_sibling_of_unknown_element_is_rejected():
    assert only_issue(patient(_nickname={"id": "a"})).expression == "Patient"


def test_r5_encounter_element_is_rejected():
    resource = example("encounter_satusehat")
    resource["actualPeriod"] = resource.pop("period")
    assert only_issue(resource).expression == "Encounter"


# --------------------------------------------------------------------------- arrays and cardinality


def test_single_value_where_array_belongs_is_rejected():
    issue = only_issue(patient(name={"text": "Budi"}))
    assert (issue.code, issue.expression) == ("structure", "Patient.name")
    assert "must be a JSON array" in issue.diagnostics


def test_array_where_single_value_belongs_is_rejected():
    issue = only_issue(patient(gender=["male"]))
    assert (issue.expression, issue.diagnostics) == ("Patient.gender", "Element 'gender' must be a single value, not an array")


def test_missing_required_elements_are_all_reported():
    resource = example("encounter_satusehat")
    del resource["status"], resource["class"]
    issues = check_structure(resource)
    assert [(i.code, i.expression) for i in issues] == [("required", "Encounter.status"), ("required", "Encounter.class")]


def test_missing_required_element_in_backbone_has_indexed_path():
    resource = example("encounter_satusehat")
    del resource["statusHistory"][1]["period"]
    issue = only_issue(resource)
    assert (issue.code, issue.expression) == ("required", "Encounter.statusHistory[1].period")


def test_required_primitive_may_be_absent_when_its_extension_is_present():
    resource = example("encounter_satusehat")
    del resource["status"]
    resource["_status"] = {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "unknown"}]}
    assert check_structure(resource) == []


def test_two_choice_variants_are_rejected():
    issue = only_issue(patient(deceasedDateTime="2020-01-01"))
    assert issue.expression == "Patient.deceased.ofType(dateTime)"
    assert "Only one deceased[x]" in issue.diagnostics


def test_choice_variant_of_a_type_not_allowed_is_unknown():
    resource = patient()
    del resource["deceasedBoolean"]
    resource["deceasedString"] = "no"
    assert only_issue(resource).diagnostics == "Unknown element 'deceasedString'"


# --------------------------------------------------------------------------- empty values and nulls


def test_empty_array_is_rejected():
    assert only_issue(patient(identifier=[])).expression == "Patient.identifier"


def test_empty_object_is_rejected():
    issue = only_issue(patient(maritalStatus={}))
    assert (issue.expression, issue.diagnostics) == ("Patient.maritalStatus", "Empty object is not allowed")


def test_empty_string_is_rejected():
    resource = patient()
    resource["name"][0]["given"] = [""]
    issue = only_issue(resource)
    assert (issue.code, issue.expression) == ("value", "Patient.name[0].given[0]")


def test_null_value_is_rejected():
    assert only_issue(patient(gender=None)).expression == "Patient.gender"


def test_null_in_primitive_array_without_extension_is_rejected():
    resource = patient()
    resource["name"][0]["given"] = ["Budi", None]
    assert only_issue(resource).expression == "Patient.name[0].given[1]"


def test_null_in_primitive_array_aligned_with_extension_is_accepted():
    resource = patient()
    resource["name"][0]["given"] = ["Budi", None]
    resource["name"][0]["_given"] = [
        None,
        {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "masked"}]},
    ]
    assert check_structure(resource) == []


def test_extension_array_of_different_length_is_rejected():
    resource = patient()
    resource["name"][0]["_given"] = [None, {"id": "g2", "extension": [{"url": "http://x", "valueString": "y"}]}]
    assert only_issue(resource).expression == "Patient.name[0].given"


def test_null_complex_array_item_is_rejected():
    assert only_issue(patient(identifier=[None])).expression == "Patient.identifier[0]"


def test_element_with_only_an_id_is_rejected():
    assert only_issue(patient(maritalStatus={"id": "m"})).expression == "Patient.maritalStatus"


# --------------------------------------------------------------------------- primitive JSON types


def test_boolean_as_string_is_rejected():
    issue = only_issue(patient(active="true"))
    assert (issue.code, issue.expression, issue.diagnostics) == (
        "value",
        "Patient.active",
        "Expected a JSON boolean, got string",
    )


def test_boolean_as_number_is_rejected():
    assert only_issue(patient(active=1)).diagnostics == "Expected a JSON boolean, got number"


def test_integer_as_string_is_rejected():
    issue = only_issue(patient(multipleBirthInteger="2"))
    assert (issue.expression, issue.diagnostics) == (
        "Patient.multipleBirth.ofType(integer)",
        "Expected a JSON integer (integer), got string",
    )


def test_integer_as_float_is_rejected():
    assert only_issue(patient(multipleBirthInteger=2.5)).expression == "Patient.multipleBirth.ofType(integer)"


def test_an_exact_number_where_an_integer_belongs_is_named_as_a_number():
    """``1.0`` and ``1e2`` are parsed exactly (jsonio.ExactDecimal): the message said "got
    ExactDecimal", a class name of this server, instead of what the client sent."""
    from fhir_server import jsonio

    for text, shown in ((b"1.0", "1.0"), (b"1e2", "1e2"), (b"2.5", "2.5")):
        resource = jsonio.loads(b'{"resourceType":"Patient","multipleBirthInteger":' + text + b"}")
        issue = only_issue(resource)
        assert issue.diagnostics == f"Expected a JSON integer (integer), got the number {shown} (a fraction or exponent)", issue
    value = jsonio.loads(b'{"resourceType":"Patient","active":1.50}')
    assert only_issue(value).diagnostics == "Expected a JSON boolean, got number"


def test_integer_out_of_32_bit_range_is_rejected():
    assert "out of range" in only_issue(patient(multipleBirthInteger=2**31)).diagnostics


def test_positive_int_zero_is_rejected():
    resource = example("encounter_satusehat")
    resource["diagnosis"][0]["rank"] = 0
    issue = only_issue(resource)
    assert (issue.expression, issue.diagnostics) == ("Encounter.diagnosis[0].rank", "Value 0 is out of range for positiveInt")


def test_decimal_as_string_is_rejected():
    resource = example("coverage_bpjs")
    resource["costToBeneficiary"][0]["valueMoney"]["value"] = "10000"
    issue = only_issue(resource)
    assert issue.expression == "Coverage.costToBeneficiary[0].value.ofType(Money).value"
    assert issue.diagnostics == "Expected a JSON number (decimal), got string"


def test_string_as_number_is_rejected():
    resource = patient()
    resource["identifier"][0]["value"] = 3174031002890003
    assert only_issue(resource).diagnostics == "Expected a JSON string (string), got number"


def test_id_longer_than_64_characters_is_rejected():
    issue = only_issue(patient(id="a" * 65))
    assert (issue.code, issue.expression) == ("value", "Patient.id")


def test_id_with_invalid_characters_is_rejected():
    assert only_issue(patient(id="p_1")).expression == "Patient.id"


def test_date_in_wrong_format_is_rejected():
    assert only_issue(patient(birthDate="19451117")).expression == "Patient.birthDate"


def test_impossible_calendar_date_is_rejected():
    assert "no such calendar date" in only_issue(patient(birthDate="2023-02-29")).diagnostics


def test_datetime_without_timezone_is_rejected():
    resource = example("encounter_satusehat")
    resource["period"]["start"] = "2022-06-14T07:00:00"
    assert only_issue(resource).expression == "Encounter.period.start"


def test_instant_without_time_is_rejected():
    resource = patient()
    resource["meta"]["lastUpdated"] = "2024-03-01"
    assert only_issue(resource).expression == "Patient.meta.lastUpdated"


def test_uri_with_whitespace_is_rejected():
    resource = patient()
    resource["identifier"][1]["system"] = "https://fhir.kemkes.go.id/id/ paspor"
    assert only_issue(resource).expression == "Patient.identifier[1].system"


def test_string_with_non_breaking_space_is_accepted():
    resource = patient()
    resource["name"][0]["text"] = "Budi\u00a0Santoso"
    assert check_structure(resource) == []


# --------------------------------------------------------------------------- extensions


def test_extension_without_url_is_rejected():
    issue = only_issue(patient(extension=[{"valueString": "x"}]))
    assert (issue.code, issue.expression) == ("required", "Patient.extension[0].url")


def test_extension_with_value_and_nested_extensions_is_rejected():
    resource = patient(extension=[{"url": "http://example.org/a", "valueString": "x", "extension": [{"url": "b", "valueString": "y"}]}])
    issue = only_issue(resource)
    assert (issue.code, issue.expression) == ("invariant", "Patient.extension[0]")


def test_extension_without_value_or_nested_extensions_is_rejected():
    assert only_issue(patient(extension=[{"url": "http://example.org/a"}])).code == "invariant"


def test_extension_value_meta_is_accepted_in_r4():
    resource = patient(extension=[{"url": "http://example.org/meta", "valueMeta": {"versionId": "1"}}])
    assert check_structure(resource) == []


def test_extension_value_codeable_reference_is_rejected_in_r4():
    resource = patient(extension=[{"url": "http://example.org/x", "valueCodeableReference": {"concept": {"text": "x"}}}])
    issue = only_issue(resource)
    assert issue.expression == "Patient.extension[0]"


def test_extension_value_ratio_range_is_rejected_in_r4():
    resource = patient(extension=[{"url": "http://example.org/x", "valueRatioRange": {"denominator": {"value": 1}}}])
    assert only_issue(resource).expression == "Patient.extension[0]"


def test_bad_value_inside_nested_address_extension_has_full_path():
    resource = patient()
    resource["address"][0]["extension"][0]["extension"][1]["valueCode"] = 3174
    issue = only_issue(resource)
    assert issue.expression == "Patient.address[0].extension[0].extension[1].value.ofType(code)"


def test_primitive_extension_is_checked_as_an_element():
    resource = patient(_birthDate={"extension": [{"url": "http://x", "valueDateTime": "17-11-1945"}]})
    assert only_issue(resource).expression == "Patient.birthDate.extension[0].value.ofType(dateTime)"


def test_extension_url_cannot_have_an_underscore_sibling():
    resource = patient(extension=[{"url": "http://example.org/a", "_url": {"id": "u"}, "valueString": "x"}])
    assert only_issue(resource).expression == "Patient.extension[0]"


def test_modifier_extension_is_checked_like_an_extension():
    resource = patient(modifierExtension=[{"valueBoolean": True}])
    assert only_issue(resource).expression == "Patient.modifierExtension[0].url"


# --------------------------------------------------------------------------- recursion into resources


def test_contained_resource_is_checked_with_its_own_type():
    resource = patient(contained=[{"resourceType": "Patient", "id": "c1", "gender": "boy"}])
    issue = only_issue(resource)
    assert (issue.code, issue.expression) == ("code-invalid", "Patient.contained[0].gender")


def test_contained_resource_without_resource_type_is_rejected():
    assert only_issue(patient(contained=[{"id": "c1"}])).expression == "Patient.contained[0]"


def test_contained_resource_cannot_contain_resources():
    inner = {"resourceType": "Organization", "id": "o1", "contained": [{"resourceType": "Organization", "id": "o2"}]}
    issue = only_issue(patient(contained=[inner]))
    assert (issue.code, issue.expression) == ("invariant", "Patient.contained[0].contained")


def test_bundle_entry_resource_is_checked_recursively():
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:1c4e1d0e-3c1b-4c35-9d1c-0a7a3b1d2e3f",
                "resource": {"resourceType": "Encounter", "status": "done", "class": {"code": "AMB"}},
                "request": {"method": "POST", "url": "Encounter"},
            }
        ],
    }
    issue = only_issue(bundle)
    assert (issue.code, issue.expression) == ("code-invalid", "Bundle.entry[0].resource.status")


def test_bundle_entry_with_r4b_only_resource_is_rejected():
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": example("patient_satusehat")}, {"resource": {"resourceType": "Ingredient"}}],
    }
    assert only_issue(bundle).expression == "Bundle.entry[1].resource"


def test_bundle_request_method_is_bound():
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [{"request": {"method": "FETCH", "url": "Patient"}}]}
    assert only_issue(bundle).expression == "Bundle.entry[0].request.method"


def test_parameters_parameter_resource_is_checked_recursively():
    params = {"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": {"resourceType": "Patient", "active": "yes"}}]}
    assert only_issue(params).expression == "Parameters.parameter[0].resource.active"


# --------------------------------------------------------------------------- narrative


def narrative(div: str) -> dict[str, Any]:
    return {"status": "generated", "div": div}


def test_valid_narrative_is_accepted():
    div = (
        f'<div {XHTML_NS}><p>Budi <b>Santoso</b>, <a href="https://example.org/p/1">detail</a></p><table><tr><td>x</td></tr></table></div>'
    )
    assert check_structure(patient(text=narrative(div))) == []


def test_narrative_with_script_is_rejected():
    issue = only_issue(patient(text=narrative(f"<div {XHTML_NS}><script>alert(1)</script>hi</div>")))
    assert (issue.code, issue.expression) == ("invariant", "Patient.text.`div`")


def test_narrative_with_event_handler_attribute_is_rejected():
    issue = only_issue(patient(text=narrative(f'<div {XHTML_NS}><img src="x.png" onerror="alert(1)"/></div>')))
    assert issue.expression == "Patient.text.`div`"


def test_narrative_with_javascript_url_is_rejected():
    assert only_issue(patient(text=narrative(f'<div {XHTML_NS}><a href="javascript:alert(1)">x</a></div>'))).code == "invariant"


def test_narrative_with_entity_encoded_javascript_url_is_rejected():
    div = f'<div {XHTML_NS}><a href="&#106;avascript:alert(1)">x</a></div>'
    assert only_issue(patient(text=narrative(div))).code == "invariant"


def test_narrative_with_iframe_is_rejected():
    assert only_issue(patient(text=narrative(f'<div {XHTML_NS}><iframe src="https://x"></iframe></div>'))).code == "invariant"


def test_narrative_without_xhtml_namespace_is_rejected():
    issue = only_issue(patient(text=narrative("<div><p>hi</p></div>")))
    assert (issue.code, issue.expression) == ("value", "Patient.text.`div`")


def test_narrative_that_is_not_a_div_is_rejected():
    assert only_issue(patient(text=narrative("plain text"))).expression == "Patient.text.`div`"


def test_narrative_status_is_bound():
    div = f"<div {XHTML_NS}>hi</div>"
    assert only_issue(patient(text={"status": "auto", "div": div})).expression == "Patient.text.status"


def test_text_mentioning_online_is_not_mistaken_for_an_event_handler():
    div = f"<div {XHTML_NS}><p>Konsultasi online = ya</p></div>"
    assert check_structure(patient(text=narrative(div))) == []


# --------------------------------------------------------------------------- required bindings


def test_gender_outside_required_value_set_is_rejected():
    issue = only_issue(patient(gender="boy"))
    assert (issue.code, issue.expression, issue.diagnostics) == (
        "code-invalid",
        "Patient.gender",
        "Code 'boy' is not in the required value set http://hl7.org/fhir/ValueSet/administrative-gender|4.0.1",
    )


def test_contact_point_system_in_datatype_is_bound():
    resource = patient()
    resource["telecom"][0]["system"] = "fax2"
    assert only_issue(resource).expression == "Patient.telecom[0].system"


def test_identifier_use_is_bound():
    resource = patient()
    resource["identifier"][0]["use"] = "primary"
    assert only_issue(resource).expression == "Patient.identifier[0].use"


def test_human_name_use_is_bound():
    resource = patient()
    resource["name"][0]["use"] = "formal"
    assert only_issue(resource).expression == "Patient.name[0].use"


def test_address_type_is_bound():
    resource = patient()
    resource["address"][0]["type"] = "house"
    assert only_issue(resource).expression == "Patient.address[0].type"


def test_address_in_contact_backbone_is_bound():
    resource = patient()
    resource["contact"][0]["address"] = {"use": "rumah"}
    assert only_issue(resource).expression == "Patient.contact[0].address.use"


def test_quantity_comparator_is_bound():
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "Tekanan darah sistolik"},
        "valueQuantity": {"value": 120, "comparator": "=", "unit": "mmHg"},
    }
    assert only_issue(observation).expression == "Observation.value.ofType(Quantity).comparator"


def test_code_in_array_is_bound_with_index():
    resource = {"resourceType": "Questionnaire", "status": "active", "subjectType": ["Patient", "Pasien"]}
    assert only_issue(resource).expression == "Questionnaire.subjectType[1]"


def test_codeable_concept_with_wrong_code_from_bound_system_is_rejected():
    condition = {
        "resourceType": "Condition",
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "aktif"}]},
        "subject": {"reference": "Patient/p1"},
    }
    issue = only_issue(condition)
    assert (issue.code, issue.expression) == ("code-invalid", "Condition.clinicalStatus.coding[0]")


def test_codeable_concept_with_valid_code_is_accepted():
    condition = {
        "resourceType": "Condition",
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
        "subject": {"reference": "Patient/p1"},
    }
    assert check_structure(condition) == []


def test_codeable_concept_with_only_foreign_codings_is_rejected():
    condition = {
        "resourceType": "Condition",
        "clinicalStatus": {"coding": [{"system": "http://example.org/status", "code": "active"}]},
        "subject": {"reference": "Patient/p1"},
    }
    issue = only_issue(condition)
    assert (issue.code, issue.expression) == ("code-invalid", "Condition.clinicalStatus")


def test_mime_type_binding_checks_syntax_only():
    resource = {"resourceType": "Binary", "contentType": "application/pdf", "data": "JVBERi0xLjQK"}
    assert check_structure(resource) == []
    resource["contentType"] = "pdf document"
    assert only_issue(resource).expression == "Binary.contentType"


def test_currency_binding_checks_syntax_only():
    resource = example("coverage_bpjs")
    resource["costToBeneficiary"][0]["valueMoney"]["currency"] = "rupiah"
    assert only_issue(resource).expression == "Coverage.costToBeneficiary[0].value.ofType(Money).currency"


# --------------------------------------------------------------------------- reporting


def test_all_issues_are_reported_not_just_the_first():
    resource = patient(gender="boy", active="true", foo=1)
    assert {i.expression for i in check_structure(resource)} == {"Patient.gender", "Patient.active", "Patient"}


def test_issues_are_capped():
    resource = {"resourceType": "Patient", **{f"x{i}": i for i in range(300)}}
    assert len(check_structure(resource)) == 100
    assert len(check_structure(resource, max_issues=5)) == 5


def test_every_issue_is_an_error():
    assert {i.severity for i in check_structure(patient(gender="boy", foo=1))} == {"error"}


def test_input_is_not_modified():
    resource = patient(gender="boy")
    before = copy.deepcopy(resource)
    check_structure(resource)
    assert resource == before


def test_base64_binary_with_slash_and_line_breaks_is_accepted():
    resource = {"resourceType": "Binary", "contentType": "text/plain", "data": "aGVs/G8g\nd29y bGQ="}
    assert check_structure(resource) == []


def test_invalid_base64_binary_is_rejected():
    resource = {"resourceType": "Binary", "contentType": "text/plain", "data": "not base64!"}
    assert only_issue(resource).expression == "Binary.data"


def test_simple_quantity_with_comparator_is_rejected():
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "Hemoglobin"},
        "referenceRange": [{"low": {"value": 12, "comparator": "<", "unit": "g/dL"}}],
    }
    issue = only_issue(observation)
    assert (issue.code, issue.expression) == ("invariant", "Observation.referenceRange[0].low.comparator")


def test_absurdly_deep_nesting_is_reported_not_raised():
    ext: dict[str, Any] = {"url": "http://example.org/leaf", "valueString": "x"}
    for _ in range(2000):
        ext = {"url": "n", "extension": [ext]}
    issue = only_issue(patient(extension=[ext]))
    assert issue.diagnostics == "Resource is nested too deeply to be checked"
