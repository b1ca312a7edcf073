"""Validation over HTTP: FHIRPath issue expressions, primitives with their '_' part, core extensions.

The same checks answer the same way on every door: a create, a transaction entry
(``Bundle.entry[n].resource...``, R4 http.html#transaction) and ``$validate``.
"""

from __future__ import annotations

from typing import Any

import orjson

FHIR_JSON = {"Content-Type": "application/fhir+json"}
OWN_PREFIX = "http://hl7.org/fhir/StructureDefinition/humanname-own-prefix"


def post(client, res_type: str, body: Any):
    return client.post(f"/fhir/{res_type}", content=orjson.dumps(body), headers=FHIR_JSON)


def expressions(r) -> list[str]:
    return [e for i in r.json()["issue"] for e in i.get("expression", [])]


def stored(client, res_type: str) -> int:
    return len(client.get(f"/fhir/{res_type}").json().get("entry", []))


def observation(**value: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, **value}


def test_choice_value_error_is_named_with_of_type(client):
    r = post(client, "Observation", observation(valueBoolean="yes"))
    assert r.status_code == 400
    assert expressions(r) == ["Observation.value.ofType(boolean)"]
    assert stored(client, "Observation") == 0


def test_repeating_primitive_with_an_id_only_part_is_stored_as_sent(client):
    patient = {
        "resourceType": "Patient",
        "name": [{"given": ["Siti", None], "_given": [{"id": "g1"}, {"extension": [{"url": "http://example.org/x", "valueString": "y"}]}]}],
    }
    r = post(client, "Patient", patient)
    assert r.status_code == 201, r.text
    assert r.json()["name"] == patient["name"]


def test_null_in_both_primitive_arrays_is_400(client):
    r = post(client, "Patient", {"resourceType": "Patient", "name": [{"given": [None], "_given": [None]}]})
    assert r.status_code == 400
    assert expressions(r) == ["Patient.name[0].given[0]"]


def test_core_extension_value_type_is_checked(client):
    name = {"family": "van Beethoven", "_family": {"extension": [{"url": OWN_PREFIX, "valueCode": "van"}]}}
    r = post(client, "Patient", {"resourceType": "Patient", "name": [name]})
    assert r.status_code == 400
    assert expressions(r) == ["Patient.name[0].family.extension[0].value.ofType(code)"]
    assert stored(client, "Patient") == 0
    name["_family"]["extension"][0] = {"url": OWN_PREFIX, "valueString": "van"}
    assert post(client, "Patient", {"resourceType": "Patient", "name": [name]}).status_code == 201


def test_transaction_entry_issue_is_under_the_entry(client):
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
            {"resource": observation(valueQuantity={"value": "1"}), "request": {"method": "POST", "url": "Observation"}},
        ],
    }
    r = client.post("/fhir", content=orjson.dumps(bundle), headers=FHIR_JSON)
    assert r.status_code == 400
    assert expressions(r) == ["Bundle.entry[1].resource.value.ofType(Quantity).value"]
    assert stored(client, "Patient") == 0


def test_validate_operation_reports_core_extension_context(client):
    patient = {"resourceType": "Patient", "extension": [{"url": OWN_PREFIX, "valueString": "van"}]}
    r = client.post("/fhir/Patient/$validate", content=orjson.dumps(patient), headers=FHIR_JSON)
    assert r.status_code == 200
    errors = [i for i in r.json()["issue"] if i["severity"] == "error"]
    assert [(i["code"], i["expression"]) for i in errors] == [("structure", ["Patient.extension[0]"])]
