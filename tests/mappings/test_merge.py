import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mappings import systems as S
from mappings.bpjs_peserta import bpjs_peserta_to_fhir
from mappings.dukcapil import dukcapil_to_fhir
from mappings.fhir import identifier_value
from mappings.merge import merge
from tests.mappings.helpers import assert_valid, fixture
from tests.mappings.strategies import bpjs_peserta, dukcapil_records


def dukcapil_patient():
    return dukcapil_to_fhir(fixture("dukcapil_call_nik")).first("Patient") | {"id": "p1", "meta": {"versionId": "1"}}


def bpjs_patient():
    return bpjs_peserta_to_fhir(fixture("bpjs_peserta")).first("Patient")


def test_bpjs_adds_card_and_phone_without_erasing_dukcapil_fields():
    merged = merge(dukcapil_patient(), bpjs_patient(), incoming_wins=False)
    assert identifier_value(merged, S.KK) == "3204150101150007"
    assert identifier_value(merged, S.BPJS_CARD) == "0001234500001"
    assert merged["telecom"][0]["value"] == "081200000001"
    assert merged["address"] == dukcapil_patient()["address"]
    assert (merged["id"], merged["meta"]["versionId"]) == ("p1", "1")
    assert_valid([merged])


def test_dukcapil_wins_over_older_bpjs_demographics():
    stored = bpjs_patient() | {"name": [{"use": "official", "text": "SITI R"}]}
    merged = merge(stored, dukcapil_patient(), incoming_wins=True)
    assert merged["name"] == [{"use": "official", "text": "SITI RAHAYU"}]
    assert identifier_value(merged, S.BPJS_CARD) == "0001234500001"


@pytest.mark.parametrize("wins", [True, False])
def test_merge_is_idempotent(wins):
    once = merge(dukcapil_patient(), bpjs_patient(), incoming_wins=wins)
    assert merge(once, bpjs_patient(), incoming_wins=wins) == once


def test_nothing_stored_means_the_incoming_resource():
    assert merge(None, bpjs_patient(), incoming_wins=False) == bpjs_patient()


def test_types_must_agree():
    with pytest.raises(ValueError):
        merge({"resourceType": "Patient"}, {"resourceType": "Coverage"}, incoming_wins=True)


@pytest.mark.slow
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dukcapil_records(), bpjs_peserta(), st.booleans())
def test_merge_of_any_two_imports_is_idempotent_and_valid(rec, peserta, wins):
    stored = dukcapil_to_fhir(rec).first("Patient")
    incoming = bpjs_peserta_to_fhir({"peserta": peserta}).first("Patient")
    once = merge(stored, incoming, incoming_wins=wins)
    assert merge(once, incoming, incoming_wins=wins) == once
    assert_valid([once])
