"""Test data of the console tests: a Dukcapil record, BPJS coverage, visits and vital signs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent.parent / "mappings" / "fixtures"
NIK = "3204154506900003"  # SITI RAHAYU, female, born 1990-06-05, Kab. Bandung (3204), Kec. 320415
BPJS = "0001234567890"


def dukcapil() -> dict[str, Any]:
    return json.loads((FIXTURES / "dukcapil_call_nik.json").read_text())


def patient(**changes: Any) -> dict[str, Any]:
    p: dict[str, Any] = {
        "resourceType": "Patient",
        "identifier": [
            {"system": "https://fhir.kemkes.go.id/id/nik", "value": NIK},
            {"system": "https://fhir-server.id/id/bpjs-kartu", "value": BPJS},
        ],
        "name": [{"text": "SITI RAHAYU"}],
        "gender": "female",
        "birthDate": "1990-06-05",
        "address": [
            {
                "line": ["JL. MAWAR NO. 7"],
                "extension": [
                    {
                        "url": "https://fhir.kemkes.go.id/r4/StructureDefinition/administrativeCode",
                        "extension": [
                            {"url": "province", "valueCode": "32"},
                            {"url": "city", "valueCode": "3204"},
                            {"url": "district", "valueCode": "320415"},
                        ],
                    }
                ],
            }
        ],
    }
    p.update(changes)
    return p


def coverage(patient_id: str, status: str = "active") -> dict[str, Any]:
    return {
        "resourceType": "Coverage",
        "status": status,
        "beneficiary": {"reference": f"Patient/{patient_id}"},
        "payor": [{"display": "BPJS Kesehatan"}],
        "type": {"text": "JKN PBI"},
        "period": {"start": "2020-01-01"},
    }


def encounter(patient_id: str, day: int) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "ambulatory"},
        "subject": {"reference": f"Patient/{patient_id}"},
        "period": {"start": f"2026-03-{day:02d}T09:00:00+07:00", "end": f"2026-03-{day:02d}T09:30:00+07:00"},
    }


def heart_rate(patient_id: str, day: int, value: float) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": f"2026-03-{day:02d}T09:10:00+07:00",
        "valueQuantity": {"value": value, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"},
    }


def condition(patient_id: str) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "I10", "display": "Essential (primary) hypertension"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
    }
