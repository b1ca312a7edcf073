"""A parameter sent with an empty value (``_count=``, ``name=``): one rule for every parameter.

search.html#errors: a server SHOULD ignore what it cannot use unless the client asks
``Prefer: handling=strict``, which asks for an error on "any unknown or unsupported parameter".
An empty value asks for nothing: it is left out (a warning OperationOutcome in the Bundle, and
not in the ``self`` link), or with ``handling=strict`` a 400 OperationOutcome. Before, ``_count=``
``_include=`` ``_summary=`` ``_total=`` and ``name=`` were 400 while ``_sort=`` and ``_elements=``
passed silently, whatever the client preferred.
"""

from __future__ import annotations

import orjson
import pytest

H = {"Content-Type": "application/fhir+json"}
STRICT = {"Prefer": "handling=strict"}
EMPTY = [
    "_count",
    "_sort",
    "_include",
    "_revinclude",
    "_summary",
    "_elements",
    "_total",
    "_contained",
    "name",
    "gender",
    "birthdate",
    "_id",
]


@pytest.fixture
def two(client):
    for family in ("Satu", "Dua"):
        body = {"resourceType": "Patient", "name": [{"family": family}]}
        assert client.post("/fhir/Patient", content=orjson.dumps(body), headers=H).status_code == 201
    return client


@pytest.mark.parametrize("name", EMPTY)
def test_an_empty_parameter_is_left_out_with_a_warning(two, name):
    r = two.get(f"/fhir/Patient?{name}=")
    assert r.status_code == 200, r.text
    bundle = r.json()
    assert bundle["total"] == 2
    matches = [e for e in bundle["entry"] if e["search"]["mode"] == "match"]
    assert len(matches) == 2
    outcomes = [e["resource"] for e in bundle["entry"] if e["search"]["mode"] == "outcome"]
    assert any(name in i["diagnostics"] and i["severity"] == "warning" for o in outcomes for i in o["issue"])
    self_link = next(link["url"] for link in bundle["link"] if link["relation"] == "self")
    assert f"{name}=" not in self_link


@pytest.mark.parametrize("name", EMPTY)
def test_an_empty_parameter_is_400_when_strict(two, name):
    r = two.get(f"/fhir/Patient?{name}=", headers=STRICT)
    assert r.status_code == 400
    outcome = r.json()
    assert outcome["resourceType"] == "OperationOutcome" and name in outcome["issue"][0]["diagnostics"]


def test_an_empty_count_beside_real_parameters_keeps_them(two):
    bundle = two.get("/fhir/Patient?_count=&name=Satu&_sort=").json()
    assert bundle["total"] == 1
    assert [e["resource"]["name"][0]["family"] for e in bundle["entry"] if e["search"]["mode"] == "match"] == ["Satu"]


def test_post_search_with_an_empty_form_field(two):
    r = two.post("/fhir/Patient/_search", content=b"name=&_count=", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200 and r.json()["total"] == 2


@pytest.mark.parametrize("query", ["_count=", "_since=", "_at="])
def test_history_and_audit_search_follow_the_same_rule(two, query):
    assert two.get(f"/fhir/Patient/_history?{query}").status_code == 200
    assert two.get(f"/fhir/_history?{query}", headers=STRICT).status_code == 400
    assert two.get("/fhir/AuditEvent?_count=").status_code == 200
    assert two.get("/fhir/AuditEvent?_count=", headers=STRICT).status_code == 400


def test_a_condition_with_an_empty_value_never_matches_everything(two):
    """Conditional writes match strictly: ``identifier=`` is 400, never "every Patient"."""
    body = orjson.dumps({"resourceType": "Patient", "gender": "male"})
    assert two.post("/fhir/Patient", content=body, headers={**H, "If-None-Exist": "identifier="}).status_code == 400
    assert two.put("/fhir/Patient?identifier=", content=body, headers=H).status_code == 400
    assert two.delete("/fhir/Patient?name=").status_code == 400
    assert two.get("/fhir/Patient?_summary=count").json()["total"] == 2
