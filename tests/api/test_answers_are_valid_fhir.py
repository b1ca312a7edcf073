"""What the server answers is valid FHIR by its own structure check.

A sweep that ran every JSON answer of a server holding the Synthea sample through
``check_structure`` found empty arrays and objects, which FHIR JSON does not allow: the
CapabilityStatement's ``searchRevInclude: []`` for Parameters, ``$duplicates`` with no pair
(``parameter: []``), ``$meta`` with nothing to list (``valueMeta: {}``), a subscription's
``$delivery-log`` before any attempt. A client with a strict parser (HAPI's, the HL7 validator)
refuses such an answer. Subsetted answers (``_summary``, ``_elements``) may lack required
elements, as search.html allows, and are checked for everything else.
"""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from fhir_server.model.structure import check_structure

SUBSETTED = "SUBSETTED"


def structure_issues(doc: dict[str, Any]) -> list[str]:
    issues = check_structure(doc)
    if any(t.get("code") == SUBSETTED for t in (doc.get("meta") or {}).get("tag") or []):
        issues = [i for i in issues if i.code != "required"]
    return [f"{i.expression}: {i.diagnostics}" for i in issues]


def _ids(client: TestClient) -> dict[str, str]:
    patient = {
        "resourceType": "Patient",
        "identifier": [{"system": "https://fhir.kemkes.go.id/id/nik", "value": "3171012345670009"}],
        "name": [{"family": "Valid", "given": ["Sah"]}],
        "gender": "female",
        "birthDate": "1990-01-02",
    }
    pid = client.post("/fhir/Patient", json=patient).json()["id"]
    encounter = {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": f"Patient/{pid}"},
    }
    eid = client.post("/fhir/Encounter", json=encounter).json()["id"]
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "Berat badan"},
        "subject": {"reference": f"Patient/{pid}"},
        "encounter": {"reference": f"Encounter/{eid}"},
        "valueQuantity": {"value": 61.5, "unit": "kg"},
    }
    client.post("/fhir/Observation", json=observation)
    return {"pid": pid, "eid": eid}


GETS = [
    "/fhir/metadata",
    "/fhir/metadata?mode=terminology",
    "/fhir/metadata?_summary=true",
    "/fhir/Patient/{pid}",
    "/fhir/Patient/{pid}?_summary=true",
    "/fhir/Patient/{pid}?_elements=name",
    "/fhir/Patient/{pid}/_history",
    "/fhir/_history?_count=5",
    "/fhir/Patient/{pid}/$everything",
    "/fhir/Encounter/{eid}/$everything",
    "/fhir/Patient/{pid}/Observation?_include=Observation:encounter",
    "/fhir/Patient/{pid}/*?_count=1",
    "/fhir/Observation/{eid}/Encounter",
    "/fhir/Encounter?_include=Encounter:subject&_revinclude=Observation:encounter",
    "/fhir/Observation?_summary=count",
    "/fhir/Observation?_count=0",
    "/fhir/Patient?unknown-param=x",
    "/fhir/Patient/nope",
    "/fhir/Patient/{pid}/$meta",
    "/fhir/Patient/$meta",
    "/fhir/$meta",
    "/fhir/$versions",
    "/fhir/Patient/$duplicates",
    "/fhir/Patient/{pid}/$satusehat-status",
    "/fhir/CodeSystem/$lookup?system=http://hl7.org/fhir/administrative-gender&code=male",
    "/fhir/ValueSet/$expand?url=http://hl7.org/fhir/ValueSet/administrative-gender",
    "/fhir/ValueSet/$validate-code?url=http://hl7.org/fhir/ValueSet/administrative-gender"
    "&system=http://hl7.org/fhir/administrative-gender&code=male",
    "/fhir/CodeSystem/$subsumes?system=http://hl7.org/fhir/administrative-gender&codeA=male&codeB=male",
    "/fhir/OperationDefinition?_count=100",
]


def test_every_answer_is_valid_fhir(client: TestClient) -> None:
    ids = _ids(client)
    found = {}
    for path in GETS:
        r = client.get(path.format(**ids))
        assert r.headers["content-type"].startswith("application/fhir+json"), path
        found[path] = structure_issues(r.json())
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"request": {"method": "GET", "url": f"Patient/{ids['pid']}"}},
            {"request": {"method": "GET", "url": "Patient/nope"}},
            {"request": {"method": "GET", "url": "Encounter?_count=1"}},
        ],
    }
    found["batch"] = structure_issues(client.post("/fhir", json=batch).json())
    invalid = {"resourceType": "Patient", "birthDate": "1990-02-30"}
    found["$validate"] = structure_issues(client.post("/fhir/Patient/$validate", json=invalid).json())
    assert {path: issues for path, issues in found.items() if issues} == {}
