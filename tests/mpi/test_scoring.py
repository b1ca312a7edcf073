"""Pair scoring (fhir_server/mpi/scoring.py, compare.py, features.py, blocking.py): the rules,
one behaviour per test, on Patients shaped as SATUSEHAT and the national imports write them."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_server.mpi import compare as C
from fhir_server.mpi.blocking import probe_keys, sound_key, stored_keys
from fhir_server.mpi.features import extract, phone_key
from fhir_server.mpi.scoring import CERTAIN, POSSIBLE, PROBABLE, score_pair

NIK = "https://fhir.kemkes.go.id/id/nik"
NIK_IBU = "https://fhir.kemkes.go.id/id/nik-ibu"
BPJS = "https://fhir-server.id/id/bpjs-kartu"
IHS = "https://fhir.kemkes.go.id/id/patient-ihs-number"
ADMIN = "https://fhir.kemkes.go.id/r4/StructureDefinition/administrativeCode"
SITI_NIK = "3204154506900003"  # Bandung regency, born 05-06-1990, female (45 = 5 + 40)


def patient(name: str, *, nik: str | None = None, birth: str | None = None, gender: str | None = None, **more: Any) -> dict[str, Any]:
    ids = [{"system": NIK, "value": nik}] if nik else []
    for system, key in ((NIK_IBU, "ibu"), (BPJS, "bpjs"), (IHS, "ihs")):
        if more.get(key):
            ids.append({"system": system, "value": more[key]})
    res: dict[str, Any] = {"resourceType": "Patient", "identifier": ids, "name": [{"text": name}]}
    if birth:
        res["birthDate"] = birth
    if gender:
        res["gender"] = gender
    if more.get("phone"):
        res["telecom"] = [{"system": "phone", "value": more["phone"]}]
    if more.get("village"):
        sub = [{"url": "village", "valueCode": more["village"]}, {"url": "rt", "valueCode": "002"}, {"url": "rw", "valueCode": "005"}]
        res["address"] = [{"extension": [{"url": ADMIN, "extension": sub}]}]
    if "order" in more:
        res["multipleBirthInteger"] = more["order"]
    return res


SITI = patient(
    "Hj. Siti Aminah binti Abdullah", nik=SITI_NIK, birth="1990-06-05", gender="female", phone="081200000001", village="3204152003"
)


def score(a: dict[str, Any], b: dict[str, Any]):
    return score_pair(extract(a), extract(b))


def test_same_nik_name_and_birth_date_is_certain():
    m = score(SITI, patient("SITI AMINAH", nik=SITI_NIK, birth="1990-06-05", gender="female"))
    assert m.grade == CERTAIN
    assert 0.99 <= m.score <= 1
    assert any("NIK identical" in r for r in m.reasons)


def test_a_nik_with_one_mistyped_digit_is_probable_not_certain():
    m = score(SITI, patient("Siti Aminah", nik="3204154506900008", birth="1990-06-05", gender="female"))
    assert m.grade == PROBABLE
    assert any("one digit" in r for r in m.reasons)


def test_a_nik_with_two_swapped_digits_is_probable():
    m = score(SITI, patient("Siti Aminah", nik="3204154506900030", birth="1990-06-05", gender="female"))
    assert m.grade == PROBABLE
    assert any("swapped" in r for r in m.reasons)


def test_no_nik_but_the_same_bpjs_card_is_certain():
    a = {**SITI, "identifier": [*SITI["identifier"], {"system": BPJS, "value": "0001234500001"}]}
    m = score(a, patient("Siti Aminah", bpjs="0001234500001", birth="1990-06-05", gender="female"))
    assert m.grade == CERTAIN
    assert any("BPJS" in r for r in m.reasons)


def test_a_nik_whose_encoded_birth_date_contradicts_the_record_is_suspect_not_proof():
    # the record says 1991-02-03, the NIK encodes 05-06-1990: the NIK agrees but proves little
    m = score(SITI, patient("Siti Aminah", nik=SITI_NIK, birth="1991-02-03", gender="female"))
    assert m.grade != CERTAIN
    assert any("suspect" in r for r in m.reasons)
    assert extract(patient("x", nik=SITI_NIK, birth="1991-02-03", gender="female")).nik.suspect  # type: ignore[union-attr]
    assert not extract(SITI).nik.suspect  # type: ignore[union-attr]


def test_one_nik_on_two_people_of_different_sex_and_age_is_at_most_possible():
    m = score(SITI, patient("Bambang Sutrisno", nik=SITI_NIK, birth="1970-01-01", gender="male"))
    assert m.grade in (None, POSSIBLE)
    assert any("shared or reused NIK" in r for r in m.reasons) or m.grade is None


def test_name_variants_with_a_birth_date_typo_and_a_reformatted_phone_are_probable():
    m = score(SITI, patient("siti aminah", birth="1990-05-06", gender="female", phone="+62 812-0000-0001", village="3204152003"))
    assert m.grade == PROBABLE
    assert any("typo" in r for r in m.reasons)
    assert any("phone" in r for r in m.reasons)


def test_different_valid_niks_are_never_certain():
    m = score(SITI, patient("Siti Aminah", nik="3204154506900777", birth="1990-06-05", gender="female"))
    assert m.grade not in (CERTAIN, PROBABLE)


@pytest.mark.parametrize(
    "baby",
    [
        patient("By. Ny. Siti Aminah", ibu=SITI_NIK, birth="2024-03-01", gender="male", phone="081200000001", village="3204152003"),
        # the mother's NIK typed as the baby's own
        patient("By. Ny. Siti Aminah", nik=SITI_NIK, birth="2024-03-01", gender="female", phone="081200000001", village="3204152003"),
        # named after all, but registered under the mother's NIK
        patient("Putri Aminah", ibu=SITI_NIK, birth="1990-06-05", gender="female", phone="081200000001", village="3204152003"),
    ],
)
def test_a_newborn_and_its_mother_are_never_above_possible(baby):
    m = score(SITI, baby)
    assert m.grade in (None, POSSIBLE)
    assert score(baby, SITI).grade == m.grade


def test_the_same_newborn_registered_twice_is_probable():
    a = patient("By. Ny. Siti Aminah", ibu=SITI_NIK, birth="2024-03-01", gender="male", village="3204152003", order=0)
    b = patient("Bayi Ny. Hj. Siti Aminah", ibu=SITI_NIK, birth="2024-03-01", gender="male", village="3204152003", order=0)
    assert score(a, b).grade == PROBABLE


def test_twins_are_at_most_possible():
    a = patient("Hasan Fauzi", nik="3204150101240001", birth="2024-01-01", gender="male", village="3204152003", order=1)
    b = patient("Husain Fauzi", nik="3204150101240002", birth="2024-01-01", gender="male", village="3204152003", order=2)
    assert score(a, b).grade in (None, POSSIBLE)


def test_twins_without_birth_order_are_told_apart_by_close_niks_on_different_names():
    a = patient("Dewi Lestari", nik="3204154101240001", birth="2024-01-01", gender="female", village="3204152003")
    b = patient("Ratna Sari", nik="3204154101240002", birth="2024-01-01", gender="female", village="3204152003")
    assert score(a, b).grade in (None, POSSIBLE)


def test_namesakes_with_different_birth_dates_do_not_match():
    a = patient("Muhammad Rizki", birth="1990-06-05", gender="male")
    b = patient("Moch. Rizki", birth="1975-11-20", gender="male")
    assert score(a, b).grade is None


def test_the_score_is_symmetric():
    other = patient("Siti Aminah", birth="1990-06-05", gender="female", village="3204152003")
    assert score(SITI, other) == score(other, SITI)


def test_reasons_are_readable_sentences_with_their_weights():
    m = score(SITI, patient("SITI AMINAH", nik=SITI_NIK, birth="1990-06-05", gender="female"))
    assert "birth date identical (+7)" in m.reasons
    assert "names equal after normalisation 'siti aminah' / 'siti aminah' (+6)" in m.reasons


@pytest.mark.parametrize(
    ("a", "b", "level"),
    [
        ("1990-06-05", "1990-06-05", C.DATE_EXACT),
        ("1990-06-05", "1990-05-06", C.DATE_TYPO),
        ("1990-06-05", "1990-06-06", C.DATE_TYPO),
        ("1990-06-05", "1909-06-05", C.DATE_TYPO),
        ("1990-06-05", "1990-06", C.DATE_PARTIAL),
        ("1990-06-05", "1975-11-20", C.DATE_DIFFERENT),
    ],
)
def test_birth_date_typo_tolerance(a, b, level):
    assert C.compare_dates(a, b) == level


def test_phone_numbers_compare_in_one_form():
    assert phone_key("+62 812-0000-0001") == phone_key("081200000001") == phone_key("6281200000001")


def test_sound_key_merges_spelling_variants():
    assert sound_key("rizki") == sound_key("rizky") == sound_key("risky")
    assert sound_key("aminah") == sound_key("aminnah")


def test_blocking_keys_meet_across_a_mistyped_nik_and_from_newborn_to_mother():
    typo = extract(patient("Siti Aminah", nik="3204154506900008"))
    assert set(stored_keys(extract(SITI))) & set(probe_keys(typo))
    baby = extract(patient("By. Ny. Siti Aminah", ibu=SITI_NIK, birth="2024-03-01"))
    assert f"nik:{SITI_NIK}" in probe_keys(baby)
    assert f"ibu:{SITI_NIK}" in probe_keys(extract(SITI))


def test_too_little_to_match_on():
    assert not extract(patient("Siti Aminah")).has_enough()
    assert extract(patient("Siti Aminah", birth="1990-06-05")).has_enough()
    assert extract(patient("", nik=SITI_NIK)).has_enough()
