"""``_list=[id]`` (R4 search.html#list): the resources a List's entries name.

A ward's patient list or a clinic's worklist is a List; ``Patient?_list=bangsal-melati`` gives its
Patients. Before, ``_list`` was "not supported (ignored)": a lenient search answered every
Patient."""

from __future__ import annotations

import orjson
import pytest

H = {"Content-Type": "application/fhir+json"}


def _put(client, resource: dict, **headers) -> None:
    r = client.put(f"/fhir/{resource['resourceType']}/{resource['id']}", content=orjson.dumps(resource), headers={**H, **headers})
    assert r.status_code in (200, 201), r.text


def _ids(client, url: str, **headers) -> list[str]:
    r = client.get(url, headers=headers)
    assert r.status_code == 200, r.text
    return sorted(
        f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in r.json().get("entry", []) if e["search"]["mode"] == "match"
    )


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
        _put(client, {"resourceType": "Patient", "id": f"l-{pid}"})
    _put(client, {"resourceType": "Encounter", "id": "l-e", "status": "in-progress", "class": {"code": "IMP"}})
    _put(client, _list("melati", "Patient/l-a", "Patient/l-b", "Encounter/l-e", "Patient/absent"))
    _put(client, _list("mawar", "Patient/l-c"))
    return client


def test_the_resources_a_list_names(ward):
    assert _ids(ward, "/fhir/Patient?_list=melati") == ["Patient/l-a", "Patient/l-b"]
    assert _ids(ward, "/fhir/Encounter?_list=melati") == ["Encounter/l-e"]
    assert _ids(ward, "/fhir/Patient?_list=melati,mawar") == ["Patient/l-a", "Patient/l-b", "Patient/l-c"]
    assert _ids(ward, "/fhir?_list=melati") == ["Encounter/l-e", "Patient/l-a", "Patient/l-b"]
    assert _ids(ward, "/fhir/Patient?_list=melati&_id=l-b") == ["Patient/l-b"]
    assert _ids(ward, "/fhir/Patient?_list=nowhere") == []


def test_the_list_as_it_is_now(ward):
    _put(ward, _list("melati", "Patient/l-c"))
    assert _ids(ward, "/fhir/Patient?_list=melati") == ["Patient/l-c"]
    assert ward.delete("/fhir/List/melati").status_code in (200, 204)
    assert _ids(ward, "/fhir/Patient?_list=melati") == []


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
    _put(secured, {"resourceType": "Patient", "id": "t-a"}, **admin)
    _put(secured, _list("t-list", "Patient/t-a"), **admin)
    patients_only = auth(token_for(secured, "system/Patient.read"))
    refused = secured.get("/fhir/Patient?_list=t-list", headers=patients_only)
    assert refused.status_code == 403 and "List" in refused.json()["issue"][0]["diagnostics"]
    both = auth(token_for(secured, "system/Patient.read system/List.read"))
    assert _ids(secured, "/fhir/Patient?_list=t-list", **both) == ["Patient/t-a"]
