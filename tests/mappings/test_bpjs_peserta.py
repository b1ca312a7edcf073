import copy

import pytest
from hypothesis import HealthCheck, given, settings

from fhir_server.errors import FhirError
from mappings import systems as S
from mappings.bpjs_peserta import bpjs_peserta_to_fhir, fhir_to_bpjs_peserta
from mappings.fhir import extension_value, identifier_value
from tests.mappings.helpers import assert_valid, fixture
from tests.mappings.strategies import bpjs_peserta


def mapped(payload):
    result = bpjs_peserta_to_fhir(payload)
    assert_valid(result.resources)
    return result


def peserta(**changes):
    p = copy.deepcopy(fixture("bpjs_peserta")["response"]["peserta"])
    p.update(changes)
    return p


def test_peserta_gives_patient_coverage_payor_and_provider():
    result = mapped(fixture("bpjs_peserta"))
    assert [(e.resource_type, e.mode) for e in result.entries] == [
        ("Organization", "create"),
        ("Organization", "create"),
        ("Patient", "update"),
        ("Coverage", "update"),
    ]
    assert [e.match for e in result.entries[2:]] == [(S.NIK, "3204154506900003"), (S.BPJS_CARD, "0001234500001")]


def test_patient_carries_nik_card_and_demographics():
    patient = mapped(fixture("bpjs_peserta")).first("Patient")
    assert identifier_value(patient, S.NIK) == "3204154506900003"
    assert identifier_value(patient, S.BPJS_CARD) == "0001234500001"
    assert (patient["gender"], patient["birthDate"]) == ("female", "1990-06-05")
    assert patient["telecom"] == [{"system": "phone", "value": "081200000001", "use": "mobile"}]


def test_coverage_fields():
    result = mapped(fixture("bpjs_peserta"))
    coverage = result.first("Coverage")
    patient_entry = next(e for e in result.entries if e.resource_type == "Patient")
    payor_entry = result.entries[0]
    assert coverage["subscriberId"] == "0001234500001" and coverage["status"] == "active"
    assert coverage["beneficiary"]["reference"] == patient_entry.full_url
    assert coverage["payor"][0]["reference"] == payor_entry.full_url
    assert payor_entry.resource["name"] == "BPJS Kesehatan"
    assert coverage["period"] == {"start": "2015-01-01", "end": "2030-12-31"}
    assert [(c["type"]["coding"][0]["code"], c["value"], c["name"]) for c in coverage["class"]] == [
        ("plan", "13", "PEGAWAI SWASTA"),
        ("class", "3", "KELAS III"),
    ]
    provider = extension_value(coverage, S.EXT_PRIMARY_CARE_PROVIDER)
    assert (identifier_value(provider, S.BPJS_FASKES), provider["display"]) == ("0000U001", "KLINIK CONTOH")


def test_unknown_participant_type_and_status_flow_through():
    result = mapped(
        peserta(jenisPeserta={"kode": "99", "keterangan": "JENIS BARU"}, statusPeserta={"kode": "7", "keterangan": "NON AKTIF KARENA X"})
    )
    coverage = result.first("Coverage")
    assert coverage["status"] == "cancelled"
    assert coverage["class"][0]["value"] == "99" and coverage["class"][0]["name"] == "JENIS BARU"
    back = fhir_to_bpjs_peserta(coverage, result.first("Patient"))["peserta"]
    assert back["statusPeserta"] == {"kode": "7", "keterangan": "NON AKTIF KARENA X"}


def test_without_nik_the_patient_is_keyed_on_the_card():
    result = mapped(peserta(nik=None))
    assert [e.match for e in result.entries if e.resource_type == "Patient"] == [(S.BPJS_CARD, "0001234500001")]


def test_nik_mismatch_warns():
    result = mapped(peserta(sex="L"))
    assert [w.expression for w in result.warnings] == ["peserta.nik"]


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"noKartu": "123"}, "peserta.noKartu"),
        ({"noKartu": None}, "peserta.noKartu"),
        ({"nama": None}, "peserta.nama"),
        ({"nik": "3204154506900000"}, "peserta.nik"),
        ({"sex": "X"}, "peserta.sex"),
        ({"hakKelas": {"kode": "9", "keterangan": "KELAS IX"}}, "peserta.hakKelas.kode"),
        ({"tglTMT": "2015-02-30"}, "peserta.tglTMT"),
    ],
)
def test_bad_input_names_the_field(changes, field):
    with pytest.raises(FhirError) as err:
        bpjs_peserta_to_fhir({"peserta": peserta(**changes)})
    assert err.value.status == 422 and err.value.issues[0].expression == field


def test_error_envelope_and_encrypted_response_are_rejected():
    with pytest.raises(FhirError) as err:
        bpjs_peserta_to_fhir({"metaData": {"code": "201", "message": "Peserta tidak ditemukan"}, "response": None})
    assert err.value.issues[0].expression == "metaData.code"
    with pytest.raises(FhirError) as err:
        bpjs_peserta_to_fhir({"metaData": {"code": "200", "message": "OK"}, "response": "3cFVL0qR"})
    assert err.value.status == 400


def test_envelope_response_and_bare_forms_map_alike():
    env = fixture("bpjs_peserta")
    assert mapped(env).resources == mapped(env["response"]).resources == mapped(env["response"]["peserta"]).resources


def canonical(p: dict) -> dict:
    out = copy.deepcopy(p)
    out.pop("umur", None)
    return out


def test_fixture_round_trip():
    result = mapped(fixture("bpjs_peserta"))
    back = fhir_to_bpjs_peserta(result.first("Coverage"), result.first("Patient"))
    assert back == {"peserta": canonical(fixture("bpjs_peserta")["response"]["peserta"])}


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bpjs_peserta())
def test_round_trip_native_fhir_native(p):
    result = mapped({"peserta": p})
    assert fhir_to_bpjs_peserta(result.first("Coverage"), result.first("Patient")) == {"peserta": p}


@pytest.mark.slow
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bpjs_peserta())
def test_round_trip_fhir_native_fhir(p):
    result = mapped({"peserta": p})
    again = mapped(fhir_to_bpjs_peserta(result.first("Coverage"), result.first("Patient")))
    assert again.resources == result.resources


def test_messy_numbers_and_key_case_are_accepted():
    messy = peserta(
        noKartu=1234500001,
        nik=3204154506900003,
        sex="p",
        pisa=3,
        hakKelas={"kode": 3, "keterangan": "Kelas 3"},
        statusPeserta={"kode": 0, "keterangan": "aktif"},
        tglLahir="05-06-1990",
    )
    messy["NoKartu"] = messy.pop("noKartu")
    result = mapped({"peserta": messy})
    assert result.first("Coverage")["subscriberId"] == "0001234500001"
    assert result.first("Patient")["birthDate"] == "1990-06-05"
    back = fhir_to_bpjs_peserta(result.first("Coverage"), result.first("Patient"))["peserta"]
    assert back["hakKelas"] == {"kode": "3", "keterangan": "KELAS III"}
    assert back["statusPeserta"] == {"kode": "0", "keterangan": "AKTIF"}
    assert (back["sex"], back["pisa"], back["nik"]) == ("P", "3", "3204154506900003")
