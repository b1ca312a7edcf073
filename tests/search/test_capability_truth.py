"""Every parameter the CapabilityStatement lists can be searched (and sorted) without error."""

from __future__ import annotations

from fhir_server.search.engine import run_search
from fhir_server.search.parameters import (
    capability_search_params,
    composite_types,
    params_for,
    resource_types,
)

SAMPLE = {
    "token": "x",
    "string": "x",
    "date": "ge2020",
    "number": "gt1",
    "quantity": "le5||mg",
    "reference": "Patient/1",
    "uri": "http://x",
    "special": "0|0|1",  # Location near (search/near.py)
}


def _value(res_type: str, entry: dict) -> str:
    if entry["type"] == "composite":
        second = composite_types(params_for(res_type)[entry["name"]])[1]
        return "a|b$" + SAMPLE[second]
    return SAMPLE[entry["type"]]


def test_every_listed_parameter_runs_and_sorts(engine):
    sortable = ("string", "token", "date", "number", "quantity", "reference", "uri")
    with engine.connect() as conn:
        for res_type in resource_types():
            for entry in capability_search_params(res_type):
                params = [(entry["name"], _value(res_type, entry)), (entry["name"] + ":missing", "true")]
                if entry["type"] in sortable or entry["name"] in ("_id", "_lastUpdated"):
                    params.append(("_sort", "-" + entry["name"]))
                res = run_search(conn, res_type, params, strict=True, default_count=5, max_count=5)
                assert res.matches == [], (res_type, entry["name"])


def test_every_listed_parameter_extracts_without_error():
    from fhir_server.search.extract import getter

    for res_type in resource_types():
        minimal = {"resourceType": res_type, "id": "x", "meta": {"tag": [{"code": "t"}]}}
        for entry in capability_search_params(res_type):
            g = getter(res_type, entry["name"])
            if entry["name"] in ("_id", "_lastUpdated") or entry["type"] == "composite":
                continue
            assert g is not None, (res_type, entry["name"])
            g[1](minimal)  # compiles (fhirpathpy) and runs
