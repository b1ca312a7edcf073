import pytest

from fhir_server.errors import FhirError
from mappings.normalize import Record, as_date, as_digits, as_flag, as_number, as_text


@pytest.mark.parametrize(
    "raw", ["1969-03-10", "10.03.1969", "10-03-1969", "10/03/1969", "1969-03-10 00:00:00", "1969-03-10T00:00:00+07:00"]
)
def test_birth_date_formats(raw):
    assert as_date(raw, "TGL_LHR") == "1969-03-10"


@pytest.mark.parametrize("raw", ["31-02-1990", "1990-13-01", "kemarin", "10.03.69"])
def test_bad_dates_name_the_field(raw):
    with pytest.raises(FhirError) as err:
        as_date(raw, "TGL_LHR")
    assert err.value.status == 422 and err.value.issues[0].expression == "TGL_LHR"


def test_numbers_become_padded_digit_strings():
    assert as_digits(2, "NO_RT", width=3) == "002"
    assert as_digits(3204150101150007, "NO_KK", exact=16) == "3204150101150007"
    assert as_digits(5.0, "NO_RW", width=3) == "005"


def test_wrong_length_is_an_error():
    with pytest.raises(FhirError) as err:
        as_digits(123, "NO_KK", exact=16)
    assert err.value.issues[0].expression == "NO_KK"


def test_text_treats_blanks_as_absent():
    assert as_text("  ") is None and as_text("") is None and as_text(None) is None
    assert as_text(12) == "12" and as_text(12.0) == "12"


def test_record_keys_are_case_insensitive():
    rec = Record({"nik": 1, "Nama_Lgkp": "X", "noKartu": None})
    assert rec.raw("NIK") == 1
    assert rec.text("NAMA_LGKP") == "X"
    assert rec.raw("NOKARTU") is None


def test_nested_record_paths_name_the_native_field():
    rec = Record({"peserta": {"noKartu": None}}).sub("peserta")
    with pytest.raises(FhirError) as err:
        rec.required_text("noKartu")
    assert err.value.issues[0].expression == "peserta.noKartu"


def test_flags_and_numbers():
    assert as_flag("1", "x") is True and as_flag(0, "x") is False and as_flag("", "x") is None
    assert as_number("36,6", "suhu") == 36.6 and as_number(60.0, "beratBadan") == 60
    with pytest.raises(FhirError):
        as_number("tinggi", "tinggiBadan")
