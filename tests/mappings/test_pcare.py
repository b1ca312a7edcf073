import copy

import pytest
from hypothesis import HealthCheck, given, settings

from fhir_server.errors import FhirError
from mappings import systems as S
from mappings.fhir import identifier_value
from mappings.pcare import (
    encounter_to_pcare_kunjungan,
    encounter_to_pcare_pendaftaran,
    kunjungan_to_fhir,
    pendaftaran_to_fhir,
)
from tests.mappings.helpers import assert_valid, fixture
from tests.mappings.strategies import pcare_kunjungan, pcare_pendaftaran


def mapped(fn, payload):
    result = fn(payload)
    assert_valid(result.resources)
    return result


def loinc(observation):
    return observation["code"]["coding"][0]["code"]


def test_pendaftaran_gives_encounter_and_vital_signs():
    result = mapped(pendaftaran_to_fhir, fixture("pcare_pendaftaran"))
    encounter = result.first("Encounter")
    assert encounter["class"]["code"] == "AMB"
    assert encounter["period"] == {"start": "2024-03-04"}
    assert encounter["reasonCode"] == [{"text": "pusing"}]
    assert identifier_value(encounter["subject"], S.BPJS_CARD) == "0001234500001"
    observations = {loinc(o): o for o in result.of_type("Observation")}
    assert sorted(observations) == sorted(["85354-9", "29463-7", "8302-2", "9279-1", "8867-4", "8280-0"])
    bp = observations["85354-9"]
    assert [(c["code"]["coding"][0]["code"], c["valueQuantity"]["value"]) for c in bp["component"]] == [("8480-6", 150), ("8462-4", 95)]
    assert observations["29463-7"]["valueQuantity"] == {"value": 60, "unit": "kg", "system": S.UCUM, "code": "kg"}
    assert all(o["encounter"]["reference"] == result.entries[0].full_url for o in observations.values())


def test_kdtkp_20_is_inpatient():
    body = fixture("pcare_pendaftaran") | {"kdTkp": "20"}
    assert mapped(pendaftaran_to_fhir, body).first("Encounter")["class"]["code"] == "IMP"


def test_zero_vitals_are_not_measured():
    body = fixture("pcare_pendaftaran") | {"sistole": 0, "diastole": 0, "lingkarPerut": 0}
    codes = {loinc(o) for o in mapped(pendaftaran_to_fhir, body).of_type("Observation")}
    assert "85354-9" not in codes and "8280-0" not in codes


def test_kunjungan_gives_ranked_conditions_and_temperature():
    result = mapped(kunjungan_to_fhir, fixture("pcare_kunjungan"))
    encounter = result.first("Encounter")
    assert encounter["status"] == "finished" and encounter["period"] == {"start": "2024-03-04", "end": "2024-03-04"}
    assert result.entries[0].match == (S.PCARE_KUNJUNGAN, "0000U0010324Y000001")
    assert [(d["rank"], d["use"]["coding"][0]["code"]) for d in encounter["diagnosis"]] == [(1, "DD"), (2, "DD")]
    assert [c["code"]["coding"][0]["code"] for c in result.of_type("Condition")] == ["I10", "R51"]
    temperature = next(o for o in result.of_type("Observation") if loinc(o) == "8310-5")
    assert temperature["valueQuantity"]["value"] == 36.6 and temperature["valueQuantity"]["code"] == "Cel"


def test_registration_and_unnumbered_visit_share_a_key():
    pendaftaran = mapped(pendaftaran_to_fhir, fixture("pcare_pendaftaran")).entries[0]
    kunjungan = mapped(kunjungan_to_fhir, fixture("pcare_kunjungan") | {"noKunjungan": None}).entries[0]
    assert pendaftaran.match == kunjungan.match == (S.PCARE_PENDAFTARAN, "0001234500001:2024-03-04:001")


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"tglDaftar": "2024-13-04"}, "tglDaftar"),
        ({"tglDaftar": None}, "tglDaftar"),
        ({"noKartu": "1"}, "noKartu"),
        ({"kdPoli": None}, "kdPoli"),
        ({"sistole": "tinggi"}, "sistole"),
        ({"kdTkp": "99"}, "kdTkp"),
    ],
)
def test_bad_pendaftaran_names_the_field(changes, field):
    with pytest.raises(FhirError) as err:
        pendaftaran_to_fhir(fixture("pcare_pendaftaran") | changes)
    assert err.value.status == 422 and err.value.issues[0].expression == field


def test_bad_diagnosis_names_the_field():
    with pytest.raises(FhirError) as err:
        kunjungan_to_fhir(fixture("pcare_kunjungan") | {"kdDiag2": "pusing"})
    assert err.value.issues[0].expression == "kdDiag2"


def test_fixture_round_trips():
    p = mapped(pendaftaran_to_fhir, fixture("pcare_pendaftaran"))
    assert encounter_to_pcare_pendaftaran(p.first("Encounter"), p.of_type("Observation")) == fixture("pcare_pendaftaran")
    k = mapped(kunjungan_to_fhir, fixture("pcare_kunjungan"))
    assert encounter_to_pcare_kunjungan(k.first("Encounter"), k.of_type("Condition"), k.of_type("Observation")) == fixture(
        "pcare_kunjungan"
    )


def test_reverse_finds_stored_conditions_by_resource_id():
    k = mapped(kunjungan_to_fhir, fixture("pcare_kunjungan"))
    encounter = copy.deepcopy(k.first("Encounter"))
    conditions = []
    for i, condition in enumerate(k.of_type("Condition")):
        stored = condition | {"id": f"c{i}"}
        stored.pop("identifier")
        conditions.append(stored)
        encounter["diagnosis"][i]["condition"]["reference"] = f"Condition/c{i}"
    back = encounter_to_pcare_kunjungan(encounter, conditions, k.of_type("Observation"))
    assert (back["kdDiag1"], back["kdDiag2"], back["kdDiag3"]) == ("I10", "R51", None)


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pcare_pendaftaran())
def test_pendaftaran_round_trip_native_fhir_native(body):
    result = mapped(pendaftaran_to_fhir, body)
    assert encounter_to_pcare_pendaftaran(result.first("Encounter"), result.of_type("Observation")) == body


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pcare_kunjungan())
def test_kunjungan_round_trip_native_fhir_native(body):
    result = mapped(kunjungan_to_fhir, body)
    back = encounter_to_pcare_kunjungan(result.first("Encounter"), result.of_type("Condition"), result.of_type("Observation"))
    assert back == body


@pytest.mark.slow
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pcare_kunjungan())
def test_kunjungan_round_trip_fhir_native_fhir(body):
    result = mapped(kunjungan_to_fhir, body)
    back = encounter_to_pcare_kunjungan(result.first("Encounter"), result.of_type("Condition"), result.of_type("Observation"))
    assert mapped(kunjungan_to_fhir, back).resources == result.resources


@pytest.mark.slow
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pcare_pendaftaran())
def test_pendaftaran_round_trip_fhir_native_fhir(body):
    result = mapped(pendaftaran_to_fhir, body)
    back = encounter_to_pcare_pendaftaran(result.first("Encounter"), result.of_type("Observation"))
    assert mapped(pendaftaran_to_fhir, back).resources == result.resources


def test_messy_pendaftaran_numbers_as_strings_and_iso_date():
    body = fixture("pcare_pendaftaran") | {
        "noKartu": 1234500001,
        "tglDaftar": "2024-03-04",
        "sistole": "150",
        "beratBadan": "60,0",
        "kdTkp": 10,
        "kunjSakit": "1",
        "rujukBalik": "0",
    }
    result = mapped(pendaftaran_to_fhir, body)
    assert encounter_to_pcare_pendaftaran(result.first("Encounter"), result.of_type("Observation")) == fixture("pcare_pendaftaran")
