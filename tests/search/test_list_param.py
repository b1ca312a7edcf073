"""``_list=[id]`` (R4 search.html#list): the resources a List's entries name.

A ward's patient list or a clinic's worklist is a List; ``Patient?_list=bangsal-melati`` gives its
Patients. Before, ``_list`` was "not supported (ignored)": a lenient search answered every
Patient."""

from __future__ import annotations

import pytest

from tests.conftest import match_ids, put_resource

H = {"Content-Type": "application/fhir+json"}


def _list(lid: str, *items: str) -> dict:
    return {
        "resourceType": "List",
        "id": lid,
        "status": "current",
        "mode": "working",
        "entry": [{"item": {"reference": item}} for item in items],
    }


@pytest.fixture
def ward(client):
    for pid in ("a", "b", "c"):
        put_resource(client, {"resourceType": "Patient", "id": f"l-{pid}"})
    put_resource(client, {"resourceType": "Encounter", "id": "l-e", "status": "in-progress", "class": {"code": "IMP"}})
    put_resource(client, _list("melati", "Patient/l-a", "Patient/l-b", "Encounter/l-e", "Patient/absent"))
    put_resource(client, _list("mawar", "Patient/l-c"))
    return client


def test_the_resources_a_list_names(ward):
    assert match_ids(ward, "/fhir/Patient?_list=melati", typed=True) == ["Patient/l-a", "Patient/l-b"]
    assert match_ids(ward, "/fhir/Encounter?_list=melati", typed=True) == ["Encounter/l-e"]
    assert match_ids(ward, "/fhir/Patient?_list=melati,mawar", typed=True) == ["Patient/l-a", "Patient/l-b", "Patient/l-c"]
    assert match_ids(ward, "/fhir?_list=melati", typed=True) == ["Encounter/l-e", "Patient/l-a", "Patient/l-b"]
    assert match_ids(ward, "/fhir/Patient?_list=melati&_id=l-b", typed=True) == ["Patient/l-b"]
    assert match_ids(ward, "/fhir/Patient?_list=nowhere", typed=True) == []


def test_the_list_as_it_is_now(ward):
    put_resource(ward, _list("melati", "Patient/l-c"))
    assert match_ids(ward, "/fhir/Patient?_list=melati", typed=True) == ["Patient/l-c"]
    assert ward.delete("/fhir/List/melati").status_code in (200, 204)
    assert match_ids(ward, "/fhir/Patient?_list=melati", typed=True) == []


@pytest.mark.parametrize("value", ["bad id!", ""])
def test_a_bad_list_id_is_400(ward, value):
    r = ward.get("/fhir/Patient", params={"_list": value}, headers={"Prefer": "handling=strict"})
    assert r.status_code == 400, r.text


def test_functional_lists_are_not_kept(ward):
    lenient = ward.get("/fhir/Condition?_list=$current-problems")
    assert lenient.status_code == 200
    warning = [e["resource"] for e in lenient.json()["entry"] if e["search"]["mode"] == "outcome"]
    assert "functional lists" in warning[0]["issue"][0]["diagnostics"]
    assert ward.get("/fhir/Condition?_list=$current-problems", headers={"Prefer": "handling=strict"}).status_code == 400


def test_token_mode_needs_list_search(secured):
    """A List is read to answer it, as a chain into List would be."""
    from tests.security.test_token_auth_http import auth, token_for

    admin = auth(token_for(secured, "system/*.*"))
    put_resource(secured, {"resourceType": "Patient", "id": "t-a"}, **admin)
    put_resource(secured, _list("t-list", "Patient/t-a"), **admin)
    patients_only = auth(token_for(secured, "system/Patient.read"))
    refused = secured.get("/fhir/Patient?_list=t-list", headers=patients_only)
    assert refused.status_code == 403 and "List" in refused.json()["issue"][0]["diagnostics"]
    both = auth(token_for(secured, "system/Patient.read system/List.read"))
    assert match_ids(secured, "/fhir/Patient?_list=t-list", typed=True, **both) == ["Patient/t-a"]
