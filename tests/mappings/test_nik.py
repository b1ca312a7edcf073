import pytest

from fhir_server.errors import FhirError
from mappings.nik import check_nik, consistency_warnings


def test_valid_nik_yields_region_sex_birth_and_serial():
    facts, warnings = check_nik("3204154506900003")
    assert (facts.province, facts.regency, facts.district) == ("32", "3204", "320415")
    assert (facts.gender, facts.month_day, facts.year2, facts.serial) == ("female", "06-05", "90", "0003")
    assert warnings == []


def test_json_number_nik_is_accepted():
    assert check_nik(3204154506900003)[0].nik == "3204154506900003"


def test_day_without_40_means_male():
    assert check_nik("3204150506900003")[0].gender == "male"


@pytest.mark.parametrize(
    "nik, why",
    [
        ("320415450690000", "16 digits"),
        ("32041545069000031", "16 digits"),
        ("0004154506900003", "province"),
        ("3204153206900003", "birth_date"),  # day 32
        ("3204157306900003", "birth_date"),  # day 73 - 40 = 33
        ("3204154513900003", "birth_date"),  # month 13
        ("3204154506900000", "serial"),
        ("32041545069O0003", "not a number"),
    ],
)
def test_invalid_nik_is_rejected_naming_the_field(nik, why):
    with pytest.raises(FhirError) as err:
        check_nik(nik, "content[0].NIK")
    assert err.value.status == 422
    assert err.value.issues[0].expression == "content[0].NIK"
    assert why in err.value.issues[0].diagnostics


def test_region_missing_from_current_list_is_only_a_warning():
    facts, warnings = check_nik("3299994506900003")
    assert facts.district == "329999"
    assert len(warnings) == 1 and warnings[0].severity == "warning"


def test_sex_mismatch_is_a_warning():
    facts, _ = check_nik("3204154506900003")
    [w] = consistency_warnings(facts, gender="male", birth_date="1990-06-05")
    assert w.severity == "warning" and "sex" in w.diagnostics and w.expression == "NIK"


def test_birth_date_mismatch_is_a_warning():
    facts, _ = check_nik("3204154506900003")
    [w] = consistency_warnings(facts, gender="female", birth_date="1990-06-06")
    assert "birth date" in w.diagnostics


def test_consistent_record_has_no_warnings():
    facts, _ = check_nik("3204154506900003")
    assert consistency_warnings(facts, gender="female", birth_date="1990-06-05") == []
