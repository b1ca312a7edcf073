import json

import pytest

from mappings import systems as S
from terminology import indonesia
from tests.mappings.helpers import assert_valid


def test_every_content_file_is_a_valid_r4_resource():
    files = sorted(indonesia.CONTENT_DIR.glob("*.json"))
    assert len(files) >= 30
    assert_valid([json.loads(f.read_text(encoding="utf-8")) for f in files])


def test_canonical_urls_are_unique_and_in_our_namespace():
    urls = [r["url"] for r in indonesia.resources()]
    assert len(urls) == len(set(urls))
    assert all(u.startswith(S.NS + "/") for u in urls)


def test_occupation_list_has_89_codes():
    cs = indonesia.codesystem(S.CS_DUKCAPIL_OCCUPATION)
    assert cs["count"] == len(cs["concept"]) == 89
    assert indonesia.lookup(S.CS_DUKCAPIL_OCCUPATION, "88").display == "WIRASWASTA"
    assert indonesia.lookup(S.CS_DUKCAPIL_OCCUPATION, 89).display == "LAINNYA"


def test_lookup_gives_indonesian_display_and_english_designation():
    concept = indonesia.lookup(S.CS_DUKCAPIL_RELIGION, "3")
    assert (concept.display, concept.english) == ("KATHOLIK", "Catholic")


def test_lookup_of_unknown_code_or_system_is_none():
    assert indonesia.lookup(S.CS_DUKCAPIL_RELIGION, "99") is None
    assert indonesia.lookup("http://example.org/nope", "1") is None


@pytest.mark.parametrize(
    "label, system, code",
    [
        ("KATOLIK", S.CS_DUKCAPIL_RELIGION, "3"),
        ("katholik", S.CS_DUKCAPIL_RELIGION, "3"),
        ("Kong Hu Cu", S.CS_DUKCAPIL_RELIGION, "6"),
        ("BELUM / TIDAK BEKERJA", S.CS_DUKCAPIL_OCCUPATION, "1"),
        ("BELUM TIDAK BEKERJA", S.CS_DUKCAPIL_OCCUPATION, "1"),
        ("PEGAWAI NEGERI SIPIL", S.CS_DUKCAPIL_OCCUPATION, "5"),
        ("  slta / sederajat ", S.CS_DUKCAPIL_EDUCATION, "5"),
        ("AKADEMI/DIPLOMA III/SARJANA MUDA", S.CS_DUKCAPIL_EDUCATION, "7"),
        ("A-", S.CS_DUKCAPIL_BLOOD, "6"),
        ("A", S.CS_DUKCAPIL_BLOOD, "1"),
        ("AB+", S.CS_DUKCAPIL_BLOOD, "9"),
        ("TIDAK_TAHU", S.CS_DUKCAPIL_BLOOD, "13"),
        ("LAKI LAKI", S.CS_DUKCAPIL_SEX, "1"),
        ("KAWIN TERCATAT", S.CS_DUKCAPIL_MARITAL, "2"),
        ("R.Jalan", S.CS_BPJS_SERVICE_TYPE, "2"),
        ("4", S.CS_DUKCAPIL_SHDK, "4"),
    ],
)
def test_messy_labels_match_their_concept(label, system, code):
    assert indonesia.match_label(system, label).code == code


def test_unknown_label_does_not_match():
    assert indonesia.match_label(S.CS_DUKCAPIL_RELIGION, "JEDI") is None


def test_translate_forward_and_reverse():
    [married] = indonesia.translate(S.CM_DUKCAPIL_MARITAL, "2")
    assert (married.system, married.code) == (S.V3_MARITAL, "M")
    [back] = indonesia.translate(S.CM_DUKCAPIL_MARITAL, "W", reverse=True)
    assert (back.system, back.code, back.display) == (S.CS_DUKCAPIL_MARITAL, "4", "CERAI MATI")


def test_religions_without_v3_equivalent_are_unmatched():
    assert indonesia.translate(S.CM_DUKCAPIL_RELIGION, "5") == []
    assert indonesia.translate(S.CM_DUKCAPIL_RELIGION, "1")[0].code == "1023"


def test_service_type_maps_to_encounter_class():
    assert indonesia.translate(S.CM_BPJS_SERVICE_TYPE, "1")[0].code == "IMP"
    assert indonesia.translate(S.CM_BPJS_SERVICE_TYPE, "2")[0].code == "AMB"


def test_fragment_code_systems_are_not_complete():
    assert not indonesia.is_complete(S.CS_BPJS_PARTICIPANT_TYPE)
    assert indonesia.is_complete(S.CS_BPJS_CLASS)


def test_counts_match_concepts_and_every_concept_has_an_english_designation():
    for cs in (r for r in indonesia.resources() if r["resourceType"] == "CodeSystem" and r.get("concept")):
        assert cs["count"] == len(cs["concept"]), cs["url"]
        for concept in cs["concept"]:
            assert any(d.get("language") == "en" for d in concept.get("designation", [])), concept


def test_every_codesystem_has_its_valueset():
    by_type = {}
    for r in indonesia.resources():
        by_type.setdefault(r["resourceType"], set()).add(r["url"])
    assert {u.replace("/CodeSystem/", "/ValueSet/") for u in by_type["CodeSystem"]} <= by_type["ValueSet"]
