"""Composite parameters: both components must come from the same element instance."""

from __future__ import annotations

import pytest
from searchutil import idset

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"


def bp(oid, systolic, diastolic):
    def comp(code, value):
        return {
            "code": {"coding": [{"system": LOINC, "code": code}]},
            "valueQuantity": {"value": value, "system": UCUM, "code": "mm[Hg]", "unit": "mmHg"},
        }

    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "85354-9"}]},
        "component": [comp("8480-6", systolic), comp("8462-4", diastolic)],
    }


@pytest.fixture
def obs(store):
    store.put(bp("high", 160, 100))
    store.put(bp("normal", 120, 80))
    store.put(bp("mixed", 110, 95))
    store.put(
        {
            "resourceType": "Observation",
            "id": "glu",
            "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "2339-0"}]},
            "valueQuantity": {"value": 95, "system": UCUM, "code": "mg/dL"},
        }
    )
    store.put(
        {
            "resourceType": "Observation",
            "id": "smoke",
            "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "72166-2"}]},
            "valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "266919005"}]},
            "effectiveDateTime": "2024-02-01",
        }
    )
    store.put(
        {
            "resourceType": "Observation",
            "id": "when",
            "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "21112-8"}]},
            "valueDateTime": "1985-03-12",
        }
    )
    return store


def test_component_code_value_quantity_pairs_within_one_component(obs):
    q = f"component-code-value-quantity={LOINC}|8480-6$gt140"
    assert idset(obs, "Observation", q) == {"high"}
    # 95 is a diastolic value in "mixed": it must not pair with the systolic code
    assert idset(obs, "Observation", "component-code-value-quantity=8480-6$95") == set()
    assert idset(obs, "Observation", "component-code-value-quantity=8462-4$95") == {"mixed"}


def test_quantity_component_with_units(obs):
    assert idset(obs, "Observation", f"code-value-quantity={LOINC}|2339-0$95|{UCUM}|mg/dL") == {"glu"}
    assert idset(obs, "Observation", f"code-value-quantity={LOINC}|2339-0$95|{UCUM}|g") == set()


def test_combo_searches_resource_and_components(obs):
    assert idset(obs, "Observation", "combo-code-value-quantity=8462-4$ge90") == {"high", "mixed"}
    assert idset(obs, "Observation", "combo-code-value-quantity=2339-0$95") == {"glu"}


def test_code_value_concept(obs):
    assert idset(obs, "Observation", "code-value-concept=72166-2$http://snomed.info/sct|266919005") == {"smoke"}


def test_code_value_date(obs):
    assert idset(obs, "Observation", "code-value-date=21112-8$1985") == {"when"}
    assert idset(obs, "Observation", "code-value-date=21112-8$gt1990") == set()


def test_composite_or_values(obs):
    q = "component-code-value-quantity=8480-6$gt150,8480-6$lt115"
    assert idset(obs, "Observation", q) == {"high", "mixed"}
