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


# --------------------------------------------------------------------------- the per-type plan

#: a value that most parameter shapes find something in (a reference, a coding, a period, ...)
_DENSE = {
    "reference": "Patient/1",
    "system": "http://s",
    "value": "v",
    "code": "c",
    "display": "d",
    "coding": [{"system": "http://s", "code": "c", "display": "d"}],
    "text": "t",
    "start": "2020-01-01",
    "end": "2021",
    "family": "F",
    "given": ["G"],
    "city": "C",
    "line": ["L"],
    "url": "http://u",
    "valueString": "vs",
    "identifier": {"system": "s", "value": "v"},
}


_SPECIAL = {"reference": "Patient/1", "system": "http://s", "url": "http://u", "value": "v", "code": "c"}
_NUMBERS = {"decimal": 1.5, "integer": 2, "positiveInt": 3, "unsignedInt": 4, "boolean": True}


def _dense(res_type: str) -> dict:
    """A resource of ``res_type`` with a value in every element down to four levels (a choice
    element in its first type; arrays where R4 has them, from the structure checker's tables):
    primitives a date-like string, a number (or a reference, system, url, code where those
    names are), complex elements objects of their own elements."""
    from fhir_server.model import structure

    def fill(table, depth: int) -> dict:
        out: dict = {}
        stems: set = set()
        for name, el in table.elements.items():
            if el.choice and el.stem in stems:
                continue
            stems.add(el.stem)
            if el.kind == structure._RESOURCE:
                continue
            if el.kind == structure._PRIM:
                value = _NUMBERS.get(el.type, _SPECIAL.get(name, "2020-01-01"))
            elif el.type == "Extension":
                value = {"url": "http://u", "valueString": "vs"}
            elif depth >= 4:
                value = dict(_DENSE)
            else:
                value = fill(el.table, depth + 1)
            out[name] = [value] if el.array else value
        return out

    return {**fill(structure._model().tables[res_type], 1), "resourceType": res_type}


def _rows(res_type: str, code: str, p, resource: dict) -> list:
    """The rows of one parameter, evaluated alone, duplicates dropped as extract_index drops them."""
    from fhir_server.search.extract import _composite_rows, _dedupe, _param_rows

    found = _composite_rows(res_type, p, resource) if p.type == "composite" else _param_rows(res_type, code, p, resource)[1]
    return _multiset(_dedupe(found))


def _multiset(rows) -> list:
    return sorted(repr(sorted(r.items())) for r in rows)


def test_the_plan_reads_only_its_keys():
    """A parameter's rows come only from the top-level keys the per-type plan names for it:
    a resource of every type with every element filled gives the same rows for each
    parameter as the same resource with only those keys, so skipping a resource that has none
    of them skips nothing (checked on every R4 type, and that the check is not vacuous)."""
    from fhir_server.resource_types import RESOURCE_TYPES
    from fhir_server.search.extract import _plan

    checked = with_rows = 0
    for res_type in RESOURCE_TYPES:
        dense = _dense(res_type)
        for code, p, reads, _ in _plan(res_type):
            if reads is None:
                continue
            only = {k: v for k, v in dense.items() if k in reads or k == "resourceType"}
            full = _rows(res_type, code, p, dense)
            assert _rows(res_type, code, p, only) == full, (res_type, code, sorted(reads))
            checked += 1
            with_rows += bool(full)
    assert checked > 2000 and with_rows > checked * 0.6, (checked, with_rows)


def test_extraction_equals_every_parameter_evaluated():
    """extract_index (with the plan) against every parameter of the type evaluated one by one."""
    from fhir_server.resource_types import RESOURCE_TYPES
    from fhir_server.search.extract import _FROM_COLUMNS

    samples = [*VARIANTS, *(_dense(t) for t in RESOURCE_TYPES)]
    for resource in samples:
        res_type = resource["resourceType"]
        rows = extract_index(resource)
        by_param: dict = {}
        for kind, items in rows.by_kind().items():
            for r in items if kind != "mpi" else ():
                by_param.setdefault(r["param"], []).append(r)
        for code, p in params_for(res_type).items():
            if code in _FROM_COLUMNS:
                continue
            expected = _rows(res_type, code, p, resource)
            # a token's :of-type rows, and Location near's two coordinates (search/near.py), are named after it
            named = [r for name, rs in by_param.items() if name in (code, f"{code}:of-type") or name.startswith(f"{code}.") for r in rs]
            got = _multiset(named)
            assert got == expected, (res_type, code)
