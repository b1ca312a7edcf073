import copy

import pytest
from hypothesis import HealthCheck, given, settings

from fhir_server.errors import FhirError
from mappings import systems as S
from mappings.fhir import extension_value, identifier_value
from mappings.sep import encounter_to_sep_request, encounter_to_sep_response, sep_to_fhir
from tests.mappings.helpers import assert_valid, fixture
from tests.mappings.strategies import sep_requests


def mapped(payload):
    result = sep_to_fhir(payload)
    assert_valid(result.resources)
    return result


def t_sep(**changes):
    body = copy.deepcopy(fixture("sep_insert_request"))
    body["request"]["t_sep"].update(changes)
    return body


def test_insert_request_gives_encounter_and_diagnosis_condition():
    result = mapped(fixture("sep_insert_request"))
    encounter, condition = result.first("Encounter"), result.first("Condition")
    assert encounter["class"] == {"system": S.V3_ACT_CODE, "code": "AMB", "display": "ambulatory"}
    assert encounter["period"] == {"start": "2024-03-04"}
    assert identifier_value(encounter["subject"], S.BPJS_CARD) == "0001234500001"
    assert identifier_value(encounter["serviceProvider"], S.BPJS_FASKES) == "0000R001"
    assert identifier_value(encounter["basedOn"][0], S.BPJS_RUJUKAN) == "0000P0010324P000001"
    assert identifier_value(extension_value(encounter, S.EXT_ENCOUNTER_COVERAGE), S.BPJS_CARD) == "0001234500001"
    assert condition["code"]["coding"] == [{"system": S.ICD10, "code": "I10"}]
    assert encounter["diagnosis"][0]["condition"]["reference"] == result.entries[1].full_url
    assert condition["encounter"]["reference"] == result.entries[0].full_url


def test_inpatient_is_imp():
    assert mapped(t_sep(jnsPelayanan="1")).first("Encounter")["class"]["code"] == "IMP"


def test_request_is_keyed_without_a_sep_number():
    entry = mapped(fixture("sep_insert_request")).entries[0]
    assert entry.match == (S.BPJS_SEP_REQUEST, "0001234500001:2024-03-04:0000R001:2:INT")


def test_response_is_keyed_on_the_sep_number_and_carries_the_request_key():
    result = mapped(fixture("sep_response"))
    encounter = result.first("Encounter")
    assert result.entries[0].match == (S.BPJS_SEP, "0000R0010324V000001")
    assert identifier_value(encounter, S.BPJS_SEP_REQUEST) == "0001234500001:2024-03-04:0000R001:2:INT"
    assert result.first("Condition")["code"]["coding"][0] == {
        "system": S.ICD10,
        "code": "I10",
        "display": "Essential (primary) hypertension",
    }
    assert encounter["serviceType"]["coding"][0]["display"] == "PENYAKIT DALAM"


def test_dotless_icd10_gets_its_dot():
    condition = mapped(t_sep(diagAwal="a150")).first("Condition")
    assert condition["code"]["coding"][0]["code"] == "A15.0"


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"noKartu": "12"}, "request.t_sep.noKartu"),
        ({"tglSep": ""}, "request.t_sep.tglSep"),
        ({"jnsPelayanan": "3"}, "request.t_sep.jnsPelayanan"),
        ({"diagAwal": "hipertensi"}, "request.t_sep.diagAwal"),
        ({"tujuanKunj": "9"}, "request.t_sep.tujuanKunj"),
        ({"ppkPelayanan": None}, "request.t_sep.ppkPelayanan"),
    ],
)
def test_bad_input_names_the_field(changes, field):
    with pytest.raises(FhirError) as err:
        sep_to_fhir(t_sep(**changes))
    assert err.value.status == 422 and err.value.issues[0].expression == field


def test_nested_bad_codes_name_the_nested_field():
    body = t_sep()
    body["request"]["t_sep"]["jaminan"]["lakaLantas"] = "8"
    with pytest.raises(FhirError) as err:
        sep_to_fhir(body)
    assert err.value.issues[0].expression == "request.t_sep.jaminan.lakaLantas"


def test_malformed_body_is_400():
    with pytest.raises(FhirError) as err:
        sep_to_fhir({"request": {"t_sep": "x"}})
    assert err.value.status == 400


def test_fixture_round_trip_request():
    result = mapped(fixture("sep_insert_request"))
    assert encounter_to_sep_request(result.first("Encounter"), result.first("Condition")) == fixture("sep_insert_request")


def test_fixture_round_trip_response():
    result = mapped(fixture("sep_response"))
    back = encounter_to_sep_response(result.first("Encounter"), result.first("Condition"))
    sep = fixture("sep_response")["response"]["sep"]
    for key in ("noSep", "tglSep", "jnsPelayanan", "kdPoli", "poli", "poliEksekutif", "noRujukan", "diagnosa", "catatan", "tujuanKunj"):
        assert back["sep"][key] == sep[key], key
    assert back["sep"]["peserta"] == {k: sep["peserta"][k] for k in ("noKartu", "nama", "noMr")}
    assert mapped(back).resources == result.resources


def test_reverse_needs_a_card_number():
    with pytest.raises(FhirError) as err:
        encounter_to_sep_request({"resourceType": "Encounter", "status": "planned", "class": {"code": "AMB"}})
    assert err.value.status == 422


def test_reverse_user_override():
    result = mapped(fixture("sep_insert_request"))
    assert encounter_to_sep_request(result.first("Encounter"), user="simrs")["request"]["t_sep"]["user"] == "simrs"


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sep_requests())
def test_round_trip_native_fhir_native(body):
    result = mapped(body)
    assert encounter_to_sep_request(result.first("Encounter"), result.first("Condition")) == body


@pytest.mark.slow
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sep_requests())
def test_round_trip_fhir_native_fhir(body):
    result = mapped(body)
    again = mapped(encounter_to_sep_request(result.first("Encounter"), result.first("Condition")))
    assert again.resources == result.resources


def test_messy_request_numbers_and_alias_keys_are_accepted():
    body = t_sep(noKartu=1234500001, jnsPelayanan=2, tujuanKunj=0, diagAwal="i10")
    body["request"]["t_sep"]["tglSEP"] = "04-03-2024"
    del body["request"]["t_sep"]["tglSep"]
    back = encounter_to_sep_request(*mapped(body).resources)
    assert back == fixture("sep_insert_request")


def test_bpjs_error_envelope_is_reported():
    with pytest.raises(FhirError) as err:
        sep_to_fhir({"metaData": {"code": "201", "message": "Rujukan tidak valid"}, "response": None})
    assert err.value.status == 422 and "Rujukan tidak valid" in err.value.issues[0].diagnostics
