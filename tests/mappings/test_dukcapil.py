import copy

import pytest
from hypothesis import HealthCheck, given, settings

from fhir_server.errors import FhirError
from mappings import systems as S
from mappings.dukcapil import dukcapil_to_fhir, patient_to_dukcapil, patient_to_dukcapil_envelope
from mappings.fhir import extension_value, get_extension
from tests.mappings.helpers import assert_valid, fixture
from tests.mappings.strategies import dukcapil_records


def patient_of(payload):
    result = dukcapil_to_fhir(payload)
    assert_valid(result.resources)
    return result.first("Patient"), result


def record(**changes):
    rec = copy.deepcopy(fixture("dukcapil_call_nik")["content"][0])
    for key, value in changes.items():
        if value is None:
            rec.pop(key, None)
        else:
            rec[key] = value
    return rec


def test_call_nik_envelope_becomes_a_satusehat_patient():
    patient, result = patient_of(fixture("dukcapil_call_nik"))
    assert patient["meta"]["profile"] == [S.SATUSEHAT_PATIENT_PROFILE]
    assert patient["identifier"][:2] == [
        {"use": "official", "system": "https://fhir.kemkes.go.id/id/nik", "value": "3204154506900003"},
        {"use": "official", "system": "https://fhir.kemkes.go.id/id/kk", "value": "3204150101150007"},
    ]
    assert patient["name"] == [{"use": "official", "text": "SITI RAHAYU"}]
    assert (patient["gender"], patient["birthDate"]) == ("female", "1990-06-05")
    assert result.warnings == []
    assert result.entries[0].match == ("https://fhir.kemkes.go.id/id/nik", "3204154506900003")
    assert result.entries[0].search == ("Patient?identifier=https%3A%2F%2Ffhir.kemkes.go.id%2Fid%2Fnik%7C3204154506900003")


def test_address_has_padded_administrative_codes():
    patient, _ = patient_of(fixture("dukcapil_call_nik"))
    address = patient["address"][0]
    assert (address["use"], address["line"], address["country"]) == ("home", ["JL. MAWAR NO. 7"], "ID")
    admin = get_extension(address, S.EXT_ADMINISTRATIVE_CODE)["extension"]
    assert {e["url"]: e["valueCode"] for e in admin} == {
        "province": "32",
        "city": "3204",
        "district": "320415",
        "village": "3204152003",
        "rt": "002",
        "rw": "005",
    }


def test_birth_place_citizenship_religion_and_marital_status():
    patient, _ = patient_of(fixture("dukcapil_call_nik"))
    assert extension_value(patient, S.EXT_BIRTH_PLACE) == {"city": "BANDUNG", "country": "ID"}
    assert extension_value(patient, S.EXT_CITIZENSHIP_STATUS) == "WNI"
    religion = extension_value(patient, S.EXT_RELIGION)["coding"]
    assert {(c["system"], c["code"]) for c in religion} == {(S.V3_RELIGION, "1023"), (S.CS_DUKCAPIL_RELIGION, "1")}
    assert patient["maritalStatus"]["coding"][0] == {"system": S.V3_MARITAL, "code": "M", "display": "Married"}


def test_fields_without_a_satusehat_element_use_our_extensions_and_contacts():
    patient, _ = patient_of(fixture("dukcapil_call_nik"))
    codes = {
        url: extension_value(patient, url)["coding"][0]["code"]
        for url in (S.EXT_OCCUPATION, S.EXT_EDUCATION, S.EXT_BLOOD_TYPE, S.EXT_FAMILY_RELATIONSHIP)
    }
    assert codes == {S.EXT_OCCUPATION: "15", S.EXT_EDUCATION: "5", S.EXT_BLOOD_TYPE: "13", S.EXT_FAMILY_RELATIONSHIP: "3"}
    parents = {c["relationship"][0]["coding"][0]["code"]: c["name"]["text"] for c in patient["contact"]}
    assert parents == {"MTH": "AMINAH", "FTH": "DARSO"}


def test_messy_input_is_accepted():
    messy = {
        "content": [
            {
                "nik": "3204154506900003",
                "no_kk": 3204150101150007.0,
                "nama_lgkp": "SITI RAHAYU",
                "jenis_klmin": "perempuan",
                "tgl_lhr": "05.06.1990",
                "agama": "KATOLIK",
                "stat_kwn": "Kawin",
                "jenis_pkrjn": "BELUM / TIDAK BEKERJA",
                "pddk_akh": "SLTA / SEDERAJAT",
                "gol_drh": "a+",
                "stat_hbkel": "ISTERI",
                "no_rt": "2",
                "no_rw": 5,
                "no_prop": "32",
                "no_kab": 4,
                "no_kec": 15,
                "no_kel": 2003,
                "kode_pos": None,
                "dusun": "",
            }
        ]
    }
    patient, result = patient_of(messy)
    back = patient_to_dukcapil(patient)
    assert back["AGAMA"] == "KATHOLIK" and back["STATUS_KAWIN"] == "KAWIN"
    assert back["JENIS_PKRJN"] == "BELUM/TIDAK BEKERJA" and back["PDDK_AKH"] == "SLTA/SEDERAJAT"
    assert back["GOL_DARAH"] == "A+" and back["STAT_HBKEL"] == "ISTRI"
    assert (back["NO_KK"], back["TGL_LHR"], back["NO_RT"]) == ("3204150101150007", "1990-06-05", 2)
    assert "KODE_POS" not in back and "DUSUN" not in back
    assert result.warnings == []


def test_bare_record_and_list_are_accepted():
    assert patient_of(record())[0] == patient_of([record()])[0] == patient_of(fixture("dukcapil_call_nik"))[0]


def test_several_records_give_several_patients():
    second = record(NIK="3204150506900004", NAMA_LGKP="BUDI", JENIS_KLMIN="LAKI-LAKI")
    result = dukcapil_to_fhir({"content": [record(), second]})
    assert [p["name"][0]["text"] for p in result.of_type("Patient")] == ["SITI RAHAYU", "BUDI"]


def test_nik_inconsistent_with_sex_and_birth_date_warns_but_maps():
    patient, result = patient_of(record(JENIS_KLMIN="LAKI-LAKI", TGL_LHR="1990-06-07"))
    assert patient["gender"] == "male"
    assert [w.severity for w in result.warnings] == ["warning", "warning"]
    assert all(w.expression == "NIK" for w in result.warnings)


@pytest.mark.parametrize(
    "content, code",
    [
        ([{"RESPON": "Data Tidak Ditemukan"}], "not-found"),
        ([{"RESPON": "Login Gagal"}], "processing"),
        ([{"RESPONSE_CODE": "05", "RESPONSE_DESC": "NIK tidak valid"}], "processing"),
    ],
)
def test_dukcapil_errors_inside_content_never_become_a_patient(content, code):
    with pytest.raises(FhirError) as err:
        dukcapil_to_fhir({"content": content, "lastPage": True})
    assert err.value.status == 422
    assert err.value.issues[0].code == code
    assert err.value.issues[0].expression.startswith("content[0].RESP")


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"NIK": "3204154506900000"}, "NIK"),
        ({"NIK": None}, "NIK"),
        ({"NAMA_LGKP": None}, "NAMA_LGKP"),
        ({"AGAMA": "JEDI"}, "AGAMA"),
        ({"JENIS_KLMIN": "X"}, "JENIS_KLMIN"),
        ({"TGL_LHR": "31-02-1990"}, "TGL_LHR"),
        ({"NO_KK": 123}, "NO_KK"),
        ({"NO_RT": "A1"}, "NO_RT"),
        ({"NO_KEL": 12345}, "NO_KEL"),
    ],
)
def test_bad_input_is_422_naming_the_native_field(changes, field):
    with pytest.raises(FhirError) as err:
        dukcapil_to_fhir(record(**changes))
    assert err.value.status == 422
    assert err.value.issues[0].expression == field


@pytest.mark.parametrize("payload", ["text", 42, {"content": "x"}, {"content": [7]}])
def test_malformed_structure_is_400(payload):
    with pytest.raises(FhirError) as err:
        dukcapil_to_fhir(payload)
    assert err.value.status == 400


def test_empty_content_is_not_found():
    with pytest.raises(FhirError) as err:
        dukcapil_to_fhir({"content": []})
    assert err.value.issues[0].code == "not-found"


def test_reverse_envelope_has_paging_fields():
    patient, _ = patient_of(fixture("dukcapil_call_nik"))
    envelope = patient_to_dukcapil_envelope([patient])
    assert envelope["numberOfElements"] == envelope["totalElements"] == 1 and envelope["lastPage"] is True
    assert envelope["content"][0]["NIK"] == "3204154506900003"


def test_reverse_without_nik_is_an_error():
    with pytest.raises(FhirError) as err:
        patient_to_dukcapil({"resourceType": "Patient", "name": [{"text": "X"}]})
    assert err.value.issues[0].expression == "Patient.identifier"


def test_reverse_uses_v3_codes_when_our_coding_is_absent():
    patient = {
        "resourceType": "Patient",
        "identifier": [{"system": S.NIK, "value": "3204154506900003"}],
        "maritalStatus": {"coding": [{"system": S.V3_MARITAL, "code": "W"}]},
        "extension": [{"url": S.EXT_RELIGION, "valueCodeableConcept": {"coding": [{"system": S.V3_RELIGION, "code": "1041"}]}}],
    }
    back = patient_to_dukcapil(patient)
    assert (back["STATUS_KAWIN"], back["AGAMA"]) == ("CERAI MATI", "KATHOLIK")


def canonical(rec: dict) -> dict:
    """What the reverse mapping emits for a native record: strings for NIK/KK, numbers for segments."""
    out = dict(rec)
    out["NIK"] = str(rec["NIK"])
    return out


def test_fixture_round_trip_native_fhir_native():
    rec = record(EKTP_STATUS=None)
    patient, _ = patient_of(rec)
    expected = canonical(rec) | {"NO_KK": "3204150101150007", "KEWARGANEGARAAN": "WNI"}
    assert patient_to_dukcapil(patient) == expected


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dukcapil_records())
def test_round_trip_native_fhir_native(rec):
    patient, result = patient_of(rec)
    assert result.warnings == []
    assert patient_to_dukcapil(patient) == canonical(rec)


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dukcapil_records())
def test_round_trip_fhir_native_fhir(rec):
    patient, _ = patient_of(rec)
    again, _ = patient_of(patient_to_dukcapil(patient))
    assert again == patient


def test_errors_in_later_records_name_their_position():
    with pytest.raises(FhirError) as err:
        dukcapil_to_fhir({"content": [record(), record(NIK="3204154506900000")]})
    assert err.value.issues[0].expression == "content[1].NIK"
    with pytest.raises(FhirError) as err:
        dukcapil_to_fhir([record(), record(AGAMA="JEDI")])
    assert err.value.issues[0].expression == "[1].AGAMA"


def test_unknown_address_region_is_only_a_warning():
    _, result = patient_of(record(NO_KEL=9999))
    assert [w.expression for w in result.warnings] == ["NO_KEL"]
    assert result.warnings[0].severity == "warning"
