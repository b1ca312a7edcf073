import pytest

from fhir_server.errors import FhirError
from mappings.api import from_fhir, to_fhir
from tests.mappings.helpers import fixture


def bundle(result):
    return {"resourceType": "Bundle", "type": "transaction", "entry": result.transaction_entries()}


@pytest.mark.parametrize(
    "kind, name, expected",
    [
        ("sep", "sep_insert_request", None),
        ("pcare-pendaftaran", "pcare_pendaftaran", None),
        ("pcare-kunjungan", "pcare_kunjungan", None),
    ],
)
def test_bundle_round_trip(kind, name, expected):
    result = to_fhir(kind, fixture(name))
    assert from_fhir(kind, bundle(result)) == fixture(name)


def test_dukcapil_bundle_round_trip():
    back = from_fhir("dukcapil", bundle(to_fhir("dukcapil", fixture("dukcapil_call_nik"))))
    assert back["content"][0]["NIK"] == "3204154506900003" and back["totalElements"] == 1


def test_bpjs_peserta_follows_the_beneficiary_reference():
    back = from_fhir("bpjs-peserta", bundle(to_fhir("bpjs-peserta", fixture("bpjs_peserta"))))
    assert back["peserta"]["nik"] == "3204154506900003" and back["peserta"]["noKartu"] == "0001234500001"


def test_stored_resources_resolve_by_type_and_id():
    result = to_fhir("bpjs-peserta", fixture("bpjs_peserta"))
    patient = result.first("Patient") | {"id": "p1"}
    other = patient | {"id": "p2", "identifier": []}
    coverage = result.first("Coverage") | {"beneficiary": {"reference": "Patient/p1"}}
    assert from_fhir("bpjs-peserta", [other, coverage, patient])["peserta"]["nik"] == "3204154506900003"


def test_sep_response_view():
    back = from_fhir("sep-response", bundle(to_fhir("sep", fixture("sep_response"))))
    assert back["sep"]["noSep"] == "0000R0010324V000001"


def test_pcare_detects_the_body_kind():
    assert to_fhir("pcare", fixture("pcare_kunjungan")).entries[0].match[1] == "0000U0010324Y000001"
    assert to_fhir("pcare", fixture("pcare_pendaftaran")).entries[0].match[1] == "0001234500001:2024-03-04:001"


def test_transaction_entries_use_conditional_requests():
    entries = to_fhir("bpjs-peserta", fixture("bpjs_peserta")).transaction_entries()
    assert entries[0]["request"] == {
        "method": "POST",
        "url": "Organization",
        "ifNoneExist": "identifier=https%3A%2F%2Ffhir-server.id%2Fid%2Fpayor%7Cbpjs-kesehatan",
    }
    assert entries[3]["request"] == {
        "method": "PUT",
        "url": "Coverage?identifier=https%3A%2F%2Ffhir-server.id%2Fid%2Fbpjs-kartu%7C0001234500001",
    }


@pytest.mark.parametrize(
    "call", [lambda: to_fhir("hl7v2", {}), lambda: from_fhir("hl7v2", {"resourceType": "Patient"}), lambda: from_fhir("sep", "text")]
)
def test_unknown_kind_or_payload_is_400(call):
    with pytest.raises(FhirError) as err:
        call()
    assert err.value.status == 400


def test_missing_resource_is_422():
    with pytest.raises(FhirError) as err:
        from_fhir("sep", {"resourceType": "Patient"})
    assert err.value.status == 422
