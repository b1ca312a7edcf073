"""Index extraction: fast paths agree with fhirpathpy; SATUSEHAT shapes; timings."""

from __future__ import annotations

import copy

import pytest
from searchsamples import COVERAGE, ENCOUNTER, PATIENT

from fhir_server.search.extract import extract_index, fhirpath_values, getter, rows_for
from fhir_server.search.parameters import params_for

VARIANTS = [
    PATIENT,
    ENCOUNTER,
    COVERAGE,
    {
        "resourceType": "Patient",
        "id": "p2",
        "deceasedDateTime": "2020-01-01",
        "name": [{"text": "Budi"}],
        "telecom": [{"system": "email", "value": "b@x.id"}],
        "_birthDate": {"extension": [{"url": "u", "valueString": "x"}]},
    },
    {
        "resourceType": "Encounter",
        "id": "e2",
        "status": "planned",
        "class": {"code": "IMP"},
        "subject": {"reference": "Group/g1"},
        "period": {"end": "2024-02"},
    },
    {
        "resourceType": "Coverage",
        "id": "c2",
        "status": "cancelled",
        "beneficiary": {"reference": "http://other/fhir/Patient/9"},
        "payor": [{"reference": "Organization/o"}],
        "policyHolder": {"identifier": {"system": "s", "value": "v"}},
    },
]


def _canon(rows):
    return sorted(tuple(sorted(r.items(), key=lambda kv: kv[0])) for r in rows)


@pytest.mark.parametrize("resource", VARIANTS, ids=lambda r: f"{r['resourceType']}-{r['id']}")
def test_fast_paths_equal_fhirpath(resource):
    res_type = resource["resourceType"]
    checked = 0
    for code, p in params_for(res_type).items():
        g = getter(res_type, code)
        if g is None or g[0] != "fast" or code in ("_id", "_lastUpdated", "address-administrative-code") or code.startswith("_"):
            continue
        fast = rows_for(p, g[1](resource), res_type)[1]
        slow = rows_for(p, fhirpath_values(resource, p.expression), res_type)[1]
        assert _canon(fast) == _canon(slow), code
        checked += 1
    assert checked >= 8


def test_hot_parameters_use_fast_paths():
    hot = {
        "Patient": [
            "identifier",
            "name",
            "family",
            "given",
            "birthdate",
            "gender",
            "address",
            "address-city",
            "telecom",
            "phone",
            "email",
            "deceased",
        ],
        "Encounter": ["subject", "patient", "date", "status", "class", "identifier"],
        "Coverage": ["beneficiary", "patient", "payor", "subscriber", "identifier", "status"],
    }
    for t, codes in hot.items():
        for c in codes:
            assert getter(t, c)[0] == "fast", (t, c)


def test_satusehat_identifier_is_a_plain_token():
    rows = extract_index(PATIENT).token
    assert {"param": "identifier", "system": "https://fhir.kemkes.go.id/id/nik", "code": "3171234567890123", "text": None} in rows


def test_bound_codes_get_their_implicit_system():
    rows = extract_index(PATIENT).token
    assert {"param": "gender", "system": "http://hl7.org/fhir/administrative-gender", "code": "female", "text": None} in rows


def test_administrative_codes_are_indexed():
    rows = [r for r in extract_index(PATIENT).token if r["param"] == "address-administrative-code"]
    assert {(r["system"], r["code"]) for r in rows} == {
        ("province", "31"),
        ("city", "3171"),
        ("district", "317101"),
        ("village", "3171011001"),
    }


def test_human_name_parts_are_each_indexed_normalised():
    values = {r["value"] for r in extract_index(PATIENT).string if r["param"] == "name"}
    assert values == {"nurhaliza", "siti", "ayu", "siti nurhaliza"}


def test_open_period_end_is_max():
    rows = extract_index(VARIANTS[4]).date
    (row,) = [r for r in rows if r["param"] == "date"]
    assert row["lo"] < -62_000_000_000_000_000 and row["hi"] > 0


def test_absolute_reference_is_indexed_as_url_and_identifier_reference_as_identifier():
    refs = extract_index(VARIANTS[5]).reference
    ben = next(r for r in refs if r["param"] == "beneficiary")
    assert ben["url"] == "http://other/fhir/Patient/9" and ben["target_id"] is None
    holder = next(r for r in refs if r["param"] == "policy-holder")
    assert (holder["id_system"], holder["id_value"]) == ("s", "v")


def test_extraction_does_not_modify_the_resource():
    before = copy.deepcopy(PATIENT)
    extract_index(PATIENT)
    assert before == PATIENT
