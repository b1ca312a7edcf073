"""Each parameter type, modifier and prefix against http://hl7.org/fhir/R4/search.html."""

from __future__ import annotations

import pytest
from searchutil import idset, search

from fhir_server.errors import FhirError


def patient(pid, **kw):
    return {"resourceType": "Patient", "id": pid, **kw}


@pytest.fixture
def people(store):
    store.put(
        patient(
            "a",
            name=[{"family": "Smith", "given": ["John"]}],
            gender="male",
            birthDate="1980-05-02",
            identifier=[
                {"system": "https://fhir.kemkes.go.id/id/nik", "value": "111"},
                {
                    "system": "http://rs/mr",
                    "value": "MR1",
                    "type": {
                        "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}],
                        "text": "Medical record",
                    },
                },
            ],
            address=[{"city": "Bandung", "line": ["Jl. Ir. H. Juanda"]}],
            meta={
                "tag": [{"system": "http://tags", "code": "vip"}],
                "security": [{"system": "http://sec", "code": "R"}],
                "profile": ["https://fhir.kemkes.go.id/r4/StructureDefinition/Patient"],
                "source": "http://simrs.rs-a.id/app",
            },
        )
    )
    store.put(
        patient(
            "b",
            name=[{"family": "Smithson", "given": ["Ayu"]}],
            gender="female",
            birthDate="1990",
            identifier=[{"value": "111"}],
            address=[{"city": "Bekasi"}],
        )
    )
    store.put(
        patient(
            "c",
            name=[{"family": "Sánchez", "text": "José Sánchez"}],
            gender="male",
            birthDate="2001-01-01",
            identifier=[{"system": "https://fhir.kemkes.go.id/id/nik", "value": "333"}],
        )
    )
    store.put(patient("d", active=True))
    return store


# ----------------------------------------------------------------------------- string


def test_string_default_is_case_insensitive_starts_with(people):
    assert idset(people, "Patient", "family=smi") == {"a", "b"}
    assert idset(people, "Patient", "family=SMITH") == {"a", "b"}


def test_string_is_accent_insensitive(people):
    assert idset(people, "Patient", "family=sanchez") == {"c"}
    assert idset(people, "Patient", "name=jose") == {"c"}


def test_string_exact_is_case_and_accent_sensitive(people):
    assert idset(people, "Patient", "family:exact=Smith") == {"a"}
    assert idset(people, "Patient", "family:exact=smith") == set()
    assert idset(people, "Patient", "family:exact=Sánchez") == {"c"}


def test_string_contains(people):
    assert idset(people, "Patient", "family:contains=ITHS") == {"b"}
    assert idset(people, "Patient", "address:contains=juanda") == {"a"}


def test_string_contains_escapes_like_wildcards(people):
    assert idset(people, "Patient", "family:contains=%") == set()
    assert idset(people, "Patient", "family:contains=_") == set()


def test_name_matches_any_part(people):
    assert idset(people, "Patient", "name=ayu") == {"b"}
    assert idset(people, "Patient", "given=john") == {"a"}


def test_or_and_and(people):
    assert idset(people, "Patient", "family=smithson,sanchez") == {"b", "c"}
    assert idset(people, "Patient", "family=smith&given=ayu") == {"b"}


# ----------------------------------------------------------------------------- token


def test_token_system_and_code(people):
    assert idset(people, "Patient", "identifier=https://fhir.kemkes.go.id/id/nik|111") == {"a"}


def test_token_code_only_matches_any_system(people):
    assert idset(people, "Patient", "identifier=111") == {"a", "b"}


def test_token_pipe_code_means_no_system(people):
    assert idset(people, "Patient", "identifier=|111") == {"b"}


def test_token_system_pipe_matches_any_code(people):
    assert idset(people, "Patient", "identifier=https://fhir.kemkes.go.id/id/nik|") == {"a", "c"}


def test_token_not_includes_resources_without_the_element(people):
    assert idset(people, "Patient", "gender:not=male") == {"b", "d"}


def test_token_text(people):
    assert idset(people, "Patient", "identifier:text=medical") == {"a"}
    assert idset(people, "Patient", "identifier:text=record") == {"a"}


def test_token_of_type(people):
    q = "identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|MR1"
    assert idset(people, "Patient", q) == {"a"}
    with pytest.raises(FhirError) as e:
        search(people, "Patient", "identifier:of-type=MR1")
    assert e.value.status == 400


def test_token_on_bound_code_has_implicit_system(people):
    assert idset(people, "Patient", "gender=http://hl7.org/fhir/administrative-gender|female") == {"b"}
    assert idset(people, "Patient", "gender=female") == {"b"}
    assert idset(people, "Patient", "gender=http://other|female") == set()


def test_administrative_code_search(store):
    from searchsamples import PATIENT

    store.put(PATIENT)
    assert idset(store, "Patient", "address-administrative-code=city|3171") == {"p1"}
    assert idset(store, "Patient", "address-administrative-code=3171011001") == {"p1"}
    assert idset(store, "Patient", "address-administrative-code=province|3171") == set()


def test_token_boolean(people):
    assert idset(people, "Patient", "active=true") == {"d"}


def test_missing_on_all_types(people):
    assert idset(people, "Patient", "birthdate:missing=true") == {"d"}
    assert idset(people, "Patient", "birthdate:missing=false") == {"a", "b", "c"}
    assert idset(people, "Patient", "gender:missing=true") == {"d"}
    assert idset(people, "Patient", "family:missing=true") == {"d"}
    assert idset(people, "Patient", "organization:missing=true") == {"a", "b", "c", "d"}


def test_escaped_comma_is_part_of_the_value(store):
    store.put(patient("x", identifier=[{"system": "s", "value": "a,b"}]))
    store.put(patient("y", identifier=[{"system": "s", "value": "a"}]))
    assert idset(store, "Patient", r"identifier=s|a\,b") == {"x"}
    assert idset(store, "Patient", "identifier=s|a,s|b") == {"y"}


def test_escaped_pipe_in_code(store):
    store.put(patient("x", identifier=[{"system": "s", "value": "a|b"}]))
    assert idset(store, "Patient", r"identifier=s|a\|b") == {"x"}


# ----------------------------------------------------------------------------- common parameters


def test_id(people):
    assert idset(people, "Patient", "_id=a,c") == {"a", "c"}
    assert idset(people, "Patient", "_id:not=a") == {"b", "c", "d"}


def test_meta_parameters(people):
    assert idset(people, "Patient", "_tag=http://tags|vip") == {"a"}
    assert idset(people, "Patient", "_security=R") == {"a"}
    assert idset(people, "Patient", "_profile=https://fhir.kemkes.go.id/r4/StructureDefinition/Patient") == {"a"}
    assert idset(people, "Patient", "_source=http://simrs.rs-a.id/app") == {"a"}


def test_last_updated(store):
    store.put(patient("old"), updated_us=1_577_836_800_000_000)  # 2020-01-01
    store.put(patient("new"), updated_us=1_704_067_200_000_000)  # 2024-01-01
    assert idset(store, "Patient", "_lastUpdated=gt2022") == {"new"}
    assert idset(store, "Patient", "_lastUpdated=le2020-01-01") == {"old"}
    assert idset(store, "Patient", "_lastUpdated=2020") == {"old"}


def test_deleted_resources_are_not_found(people):
    people.delete("Patient", "a")
    assert idset(people, "Patient", "family=smith") == {"b"}


# ----------------------------------------------------------------------------- date


def test_date_prefixes_on_partial_dates(people):
    assert idset(people, "Patient", "birthdate=1980") == {"a"}
    assert idset(people, "Patient", "birthdate=1980-05-02") == {"a"}
    assert idset(people, "Patient", "birthdate=1990-06") == set()  # 1990 is wider than June 1990
    assert idset(people, "Patient", "birthdate=gt1990-06") == {"b", "c"}
    assert idset(people, "Patient", "birthdate=lt1990-06") == {"a", "b"}
    assert idset(people, "Patient", "birthdate=ge1990") == {"b", "c"}
    assert idset(people, "Patient", "birthdate=le1990") == {"a", "b"}
    assert idset(people, "Patient", "birthdate=sa1990") == {"c"}
    assert idset(people, "Patient", "birthdate=eb1990") == {"a"}
    assert idset(people, "Patient", "birthdate=ne1990") == {"a", "c"}
    assert idset(people, "Patient", "birthdate=ge1980&birthdate=lt2000") == {"a", "b"}


def test_date_ap_is_approximate(people):
    assert "a" in idset(people, "Patient", "birthdate=ap1980-05-10")
    assert "c" not in idset(people, "Patient", "birthdate=ap1980-05-10")


def test_period_dates(store):
    enc = {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"}}
    store.put({**enc, "id": "e1", "period": {"start": "2024-01-05T08:00:00+07:00", "end": "2024-01-05T09:00:00+07:00"}})
    store.put({**enc, "id": "open", "period": {"start": "2024-01-10"}})
    assert idset(store, "Encounter", "date=2024-01-05") == {"e1"}
    assert idset(store, "Encounter", "date=ge2024-01-06") == {"open"}
    assert idset(store, "Encounter", "date=lt2024-01-06") == {"e1"}
    assert idset(store, "Encounter", "date=gt2030") == {"open"}
    assert idset(store, "Encounter", "date=2024-01-05T01:30:00Z") == set()  # the search instant is narrower
    assert "e1" in idset(store, "Encounter", "date=ap2024-01-05T01:30:00Z")


# ----------------------------------------------------------------------------- reference


@pytest.fixture
def encounters(store):
    for pid in ("p1", "p2"):
        store.put(
            patient(pid, identifier=[{"system": "https://fhir.kemkes.go.id/id/nik", "value": f"nik-{pid}"}], name=[{"family": f"Fam{pid}"}])
        )
    enc = {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"}}
    store.put({**enc, "id": "e1", "subject": {"reference": "Patient/p1"}})
    store.put({**enc, "id": "e2", "subject": {"reference": "Patient/p2"}})
    store.put({**enc, "id": "e3", "subject": {"reference": "Group/p1"}})
    store.put({**enc, "id": "e4", "subject": {"reference": "http://other.example/fhir/Patient/p1"}})
    store.put({**enc, "id": "e5", "subject": {"identifier": {"system": "https://fhir.kemkes.go.id/id/nik", "value": "9"}}})
    return store


def test_reference_type_and_id(encounters):
    assert idset(encounters, "Encounter", "subject=Patient/p1") == {"e1"}


def test_reference_bare_id_matches_any_type(encounters):
    assert idset(encounters, "Encounter", "subject=p1") == {"e1", "e3"}


def test_reference_type_modifier(encounters):
    assert idset(encounters, "Encounter", "subject:Patient=p1") == {"e1"}
    assert idset(encounters, "Encounter", "subject:Group=p1") == {"e3"}


def test_patient_parameter_only_follows_patient_references(encounters):
    assert idset(encounters, "Encounter", "patient=p1") == {"e1"}


def test_reference_absolute_url(encounters):
    assert idset(encounters, "Encounter", "subject=http://other.example/fhir/Patient/p1") == {"e4"}


def test_reference_identifier_modifier(encounters):
    assert idset(encounters, "Encounter", "subject:identifier=https://fhir.kemkes.go.id/id/nik|9") == {"e5"}


def test_reference_with_own_base_url_is_local(encounters):
    from fhir_server.search.engine import run_search

    with encounters.engine.connect() as conn:
        res = run_search(
            conn,
            "Encounter",
            [("subject", "http://me/fhir/Patient/p2")],
            strict=True,
            default_count=10,
            max_count=10,
            base_url="http://me/fhir",
        )
    assert [i for _, i, _ in res.matches] == ["e2"]


# ----------------------------------------------------------------------------- number, quantity, uri


def test_number_prefixes_and_implicit_precision(store):
    for rid, p in (("r1", 0.5), ("r2", 0.55), ("r3", 0.9)):
        store.put(
            {
                "resourceType": "RiskAssessment",
                "id": rid,
                "status": "final",
                "subject": {"reference": "Patient/x"},
                "prediction": [{"probabilityDecimal": p}],
            }
        )
    assert idset(store, "RiskAssessment", "probability=0.5") == {"r1"}  # [0.45, 0.55)
    assert idset(store, "RiskAssessment", "probability=0.55") == {"r2"}
    assert idset(store, "RiskAssessment", "probability=1") == {"r1", "r2", "r3"}  # [0.5, 1.5)
    assert idset(store, "RiskAssessment", "probability=gt0.5") == {"r2", "r3"}
    assert idset(store, "RiskAssessment", "probability=ge0.55") == {"r2", "r3"}
    assert idset(store, "RiskAssessment", "probability=lt0.55") == {"r1"}
    assert idset(store, "RiskAssessment", "probability=le0.5") == {"r1"}
    assert idset(store, "RiskAssessment", "probability=ne0.5") == {"r2", "r3"}
    assert idset(store, "RiskAssessment", "probability=ap0.52") == {"r1", "r2"}


def test_quantity_value_system_code(store):
    def obs(oid, value, code="mg", system="http://unitsofmeasure.org"):
        store.put(
            {
                "resourceType": "Observation",
                "id": oid,
                "status": "final",
                "code": {"text": "x"},
                "valueQuantity": {"value": value, "system": system, "code": code, "unit": code},
            }
        )

    obs("o1", 5.4)
    obs("o2", 10, code="g")
    obs("o3", 7, system="http://other")
    assert idset(store, "Observation", "value-quantity=5.4|http://unitsofmeasure.org|mg") == {"o1"}
    assert idset(store, "Observation", "value-quantity=5.4") == {"o1"}
    assert idset(store, "Observation", "value-quantity=gt5||mg") == {"o1", "o3"}
    assert idset(store, "Observation", "value-quantity=gt5|http://unitsofmeasure.org|") == {"o1", "o2"}
    assert idset(store, "Observation", "value-quantity=le7") == {"o1", "o3"}


def test_uri_exact_below_above(store):
    for vid, url in (
        ("v1", "http://acme.org/fhir/ValueSet/123"),
        ("v2", "http://acme.org/fhir/ValueSet/1234"),
        ("v3", "http://acme.org/other"),
    ):
        store.put({"resourceType": "ValueSet", "id": vid, "status": "active", "url": url})
    assert idset(store, "ValueSet", "url=http://acme.org/fhir/ValueSet/123") == {"v1"}
    assert idset(store, "ValueSet", "url:below=http://acme.org/fhir/") == {"v1", "v2"}
    assert idset(store, "ValueSet", "url:above=http://acme.org/fhir/ValueSet/123/_history/5") == {"v1"}


# ----------------------------------------------------------------------------- system level, _type


def test_system_search_with_type(encounters):
    found = search(encounters, None, "_type=Patient,Encounter&_id=p1,e1").matches
    assert {(t, i) for t, i, _ in found} == {("Patient", "p1"), ("Encounter", "e1")}


def test_system_search_without_type_allows_only_common_parameters(encounters):
    found = search(encounters, None, "_id=p2").matches
    assert [(t, i) for t, i, _ in found] == [("Patient", "p2")]
    res = search(encounters, None, "family=x")
    assert res.issues and res.issues[0].code == "not-supported"


def test_huge_and_odd_values_are_indexed_and_found(store):
    big = "😀" * 2000
    store.put(
        patient(
            "big",
            identifier=[{"system": "s" * 3000, "value": big}],
            name=[{"family": big + "\x00x"}],
            meta={"profile": ["http://x/" + "p" * 5000]},
        )
    )
    assert idset(store, "Patient", f"identifier={'s' * 3000}|{big}") == {"big"}
    assert idset(store, "Patient", "family=" + "😀" * 10) == {"big"}
    assert idset(store, "Patient", "_profile:below=http://x/ppp") == {"big"}
