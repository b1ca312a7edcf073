"""Search in a compartment (R4 http.html#search, compartmentdefinition.html):
``GET [base]/Patient/[id]/[type]``, ``GET [base]/Patient/[id]/*``, their ``POST .../_search``
forms and Bundle entries. fhir-kit-client's ``compartmentSearch`` and SMART apps send these; they
were 404 "No FHIR endpoint".

Membership follows the official R4 CompartmentDefinitions: an Observation is in Patient 1's
compartment when its ``subject`` *or* its ``performer`` is Patient 1 (no plain search says that
in one query); an Encounter is in its own Encounter compartment (``{def}``)."""

from __future__ import annotations

import base64

import orjson
import pytest

from tests.conftest import put_resource
from tests.security.test_audit_trail_http import _events


def _encounter(patient, status, eid=None):
    encounter = {"resourceType": "Encounter", "status": status, "class": {"code": "AMB"}, "subject": {"reference": f"Patient/{patient}"}}
    return {"id": eid, **encounter} if eid else encounter


def _ids(bundle, mode="match"):
    return sorted(f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle.get("entry", []) if e["search"]["mode"] == mode)


@pytest.fixture
def chart(client):
    """Two patients, their encounters and observations; an Observation of p2 performed by p1."""
    for pid in ("p1", "p2"):
        put_resource(client, {"resourceType": "Patient", "id": pid, "gender": "female"})
    put_resource(
        client, {"resourceType": "Patient", "id": "p1-old", "link": [{"other": {"reference": "Patient/p1"}, "type": "replaced-by"}]}
    )
    put_resource(client, {"resourceType": "Organization", "id": "rs1", "name": "RSUD"})
    put_resource(client, _encounter("p1", "finished", "e1"))
    put_resource(client, _encounter("p1", "planned", "e2"))
    put_resource(client, _encounter("p2", "finished", "e3"))
    code = {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}
    put_resource(
        client,
        {
            "resourceType": "Observation",
            "id": "o1",
            "status": "final",
            "code": code,
            "subject": {"reference": "Patient/p1"},
            "encounter": {"reference": "Encounter/e1"},
        },
    )
    put_resource(
        client,
        {
            "resourceType": "Observation",
            "id": "o2",
            "status": "final",
            "code": code,
            "subject": {"reference": "Patient/p2"},
            "performer": [{"reference": "Patient/p1"}],
        },
    )
    put_resource(
        client, {"resourceType": "Observation", "id": "o3", "status": "final", "code": code, "subject": {"reference": "Patient/p2"}}
    )
    return client


def test_a_type_in_a_patient_compartment(chart):
    r = chart.get("/fhir/Patient/p1/Encounter")
    assert r.status_code == 200 and r.json()["type"] == "searchset"
    assert _ids(r.json()) == ["Encounter/e1", "Encounter/e2"]
    assert _ids(r.json()) == _ids(chart.get("/fhir/Encounter?patient=Patient/p1").json())
    # the Observation p1 performed is in p1's compartment too (subject OR performer)
    assert _ids(chart.get("/fhir/Patient/p1/Observation").json()) == ["Observation/o1", "Observation/o2"]
    assert _ids(chart.get("/fhir/Patient/p2/Observation").json()) == ["Observation/o2", "Observation/o3"]


def test_criteria_apply_within_the_compartment(chart):
    assert _ids(chart.get("/fhir/Patient/p1/Encounter?status=finished").json()) == ["Encounter/e1"]
    assert chart.get("/fhir/Patient/p1/Encounter?status=finished&_summary=count").json()["total"] == 1
    included = chart.get("/fhir/Patient/p1/Observation?_id=o1&_include=Observation:encounter").json()
    assert _ids(included) == ["Observation/o1"] and _ids(included, "include") == ["Encounter/e1"]
    assert _ids(chart.get("/fhir/Patient/nobody/Encounter").json()) == []  # the focal need not exist, as for ?patient=


def test_every_type_in_a_compartment_and_type_lists(chart):
    everything = chart.get("/fhir/Patient/p1/*").json()
    assert _ids(everything) == ["Encounter/e1", "Encounter/e2", "Observation/o1", "Observation/o2", "Patient/p1-old"]
    # the Patient definition names ``link``: p1 itself is no member (its $everything adds it)
    assert "Patient/p1" not in _ids(everything)
    assert _ids(chart.get("/fhir/Patient/p1/*?_type=Observation").json()) == ["Observation/o1", "Observation/o2"]
    refused = chart.get("/fhir/Patient/p1/*?_type=Organization,Encounter")
    assert refused.status_code == 400 and "Organization is not in the Patient compartment" in refused.json()["issue"][0]["diagnostics"]


def test_the_focal_resource_of_an_encounter_compartment_is_in_it(chart):
    assert _ids(chart.get("/fhir/Encounter/e1/Encounter").json()) == ["Encounter/e1"]
    assert _ids(chart.get("/fhir/Encounter/e1/Observation").json()) == ["Observation/o1"]
    assert _ids(chart.get("/fhir/Encounter/e1/*").json()) == ["Encounter/e1", "Observation/o1"]


def test_pages_and_links_name_the_compartment(chart):
    first = chart.get("/fhir/Patient/p1/*?_count=2").json()
    links = {link["relation"]: link["url"] for link in first["link"]}
    assert links["self"] == "http://testserver/fhir/Patient/p1/*?_count=2"
    seen = _ids(first)
    url = links["next"]
    assert url.startswith("http://testserver/fhir/Patient/p1/*?")
    while url:
        page = chart.get(url).json()
        seen += _ids(page)
        url = next((link["url"] for link in page["link"] if link["relation"] == "next"), None)
    assert sorted(seen) == _ids(chart.get("/fhir/Patient/p1/*").json()) and len(seen) == len(set(seen)) == 5


def test_the_compartment_follows_changes_and_deletes(chart):
    put_resource(chart, _encounter("p2", "planned", "e2"))
    assert chart.delete("/fhir/Encounter/e1").status_code in (200, 204)
    assert _ids(chart.get("/fhir/Patient/p1/Encounter").json()) == []
    assert _ids(chart.get("/fhir/Patient/p2/Encounter").json()) == ["Encounter/e2", "Encounter/e3"]


def test_other_request_forms(chart):
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    posted = chart.post("/fhir/Patient/p1/Encounter/_search", content=b"status=finished", headers=form)
    assert posted.status_code == 200 and _ids(posted.json()) == ["Encounter/e1"]
    every = chart.post("/fhir/Patient/p1/_search", content=b"_type=Encounter", headers=form)
    assert every.status_code == 200 and _ids(every.json()) == ["Encounter/e1", "Encounter/e2"]
    # GET .../_search (HAPI's GET_WITH_SEARCH style) is the search, HEAD its GET without a body
    assert _ids(chart.get("/fhir/Patient/p1/Encounter/_search?status=planned").json()) == ["Encounter/e2"]
    head = chart.head("/fhir/Patient/p1/Encounter")
    assert head.status_code == 200 and head.content == b""
    assert _ids(chart.get("/fhir/Patient/p1/Encounter/").json()) == ["Encounter/e1", "Encounter/e2"]  # a trailing slash


def test_errors_are_operation_outcomes(chart):
    not_a_compartment = chart.get("/fhir/Observation/o1/Encounter")
    assert not_a_compartment.status_code == 400
    assert "Observation is not a compartment" in not_a_compartment.json()["issue"][0]["diagnostics"]
    outside = chart.get("/fhir/Patient/p1/Organization")
    assert outside.status_code == 400 and outside.json()["resourceType"] == "OperationOutcome"
    unknown = chart.get("/fhir/Patient/p1/Nope")
    assert unknown.status_code == 404 and unknown.json()["resourceType"] == "OperationOutcome"
    bad_id = chart.get("/fhir/Patient/bad%20id/Encounter")  # was a searchset whose links held the space
    assert bad_id.status_code == 400 and "not a valid FHIR id" in bad_id.json()["issue"][0]["diagnostics"]
    strict = chart.get("/fhir/Patient/p1/Encounter?nonsense=1", headers={"Prefer": "handling=strict"})
    assert strict.status_code == 400


def test_audit_events_are_not_searched_with_other_types(chart):
    """They live in the audit trail, not among the stored resources a search over types reads:
    ``?_type=AuditEvent`` answered total 0 while there were many."""
    chart.get("/fhir/Patient/p1")
    for url in ("/fhir?_type=AuditEvent", "/fhir?_type=Patient,AuditEvent", "/fhir/Patient/p1/*?_type=AuditEvent"):
        r = chart.get(url)
        assert r.status_code == 400 and "[base]/AuditEvent" in r.json()["issue"][0]["diagnostics"], url
    assert chart.get("/fhir/AuditEvent?_count=1").json()["entry"]


def test_bundle_entries(chart):
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"request": {"method": "GET", "url": "Patient/p1/Encounter?status=finished"}},
            {"request": {"method": "GET", "url": "Patient/p1/*?_type=Observation"}},
            {"request": {"method": "GET", "url": "Patient/p1/Organization"}},
            {"request": {"method": "GET", "url": "http://testserver/fhir/Encounter/e1/*"}},
            {"request": {"method": "GET", "url": "Patient/p1/Nope"}},
        ],
    }
    entries = chart.post("/fhir", content=orjson.dumps(batch), headers={"Content-Type": "application/fhir+json"}).json()["entry"]
    assert [e["response"]["status"][:3] for e in entries] == ["200", "200", "400", "200", "404"]  # as on the routes
    assert _ids(entries[0]["resource"]) == ["Encounter/e1"]
    assert _ids(entries[1]["resource"]) == ["Observation/o1", "Observation/o2"]
    assert _ids(entries[3]["resource"]) == ["Encounter/e1", "Observation/o1"]
    transaction = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": _encounter("p1", "planned"),
                "request": {"method": "POST", "url": "Encounter"},
            },
            {"request": {"method": "GET", "url": "Patient/p1/Encounter?_summary=count"}},
        ],
    }
    r = chart.post("/fhir", content=orjson.dumps(transaction), headers={"Content-Type": "application/fhir+json"})
    assert r.status_code == 200
    assert r.json()["entry"][1]["resource"]["total"] == 3  # the transaction's own write is seen


def test_audit_events_of_a_patient_and_the_audit_of_the_search(chart):
    chart.get("/fhir/Patient/p1")
    chart.get("/fhir/Patient/p1/Encounter?status=finished")
    events = _events(chart, _count="100")
    search = next(e for e in events if e["subtype"][0]["code"] == "search-type" and e["entity"][0].get("what"))
    # the compartment is the entity; what was searched in it stays in the query
    assert search["entity"][0]["what"]["reference"] == "Patient/p1"
    assert base64.b64decode(search["entity"][0]["query"]) == b"Encounter?status=finished"
    about = chart.get("/fhir/Patient/p1/AuditEvent").json()
    assert about["type"] == "searchset" and about["entry"]
    assert all(e["resource"]["entity"][0]["what"]["reference"] == "Patient/p1" for e in about["entry"])
    refused = chart.get("/fhir/Practitioner/x/AuditEvent")
    assert refused.status_code == 400 and refused.json()["resourceType"] == "OperationOutcome"


def test_the_capability_statement_declares_the_compartments(client):
    rest = client.get("/fhir/metadata").json()["rest"][0]
    assert rest["compartment"] == [
        f"http://hl7.org/fhir/CompartmentDefinition/{c}" for c in ("device", "encounter", "patient", "practitioner", "relatedperson")
    ]


def test_token_mode_needs_the_scope_of_what_is_searched(secured):
    from tests.security.test_token_auth_http import auth, token_for

    patients_only = token_for(secured, "system/Patient.read")
    refused = secured.get("/fhir/Patient/p1/Encounter", headers=auth(patients_only))
    assert refused.status_code == 403 and refused.json()["resourceType"] == "OperationOutcome"
    form = {**auth(patients_only), "Content-Type": "application/x-www-form-urlencoded"}
    assert secured.post("/fhir/Patient/p1/Encounter/_search", content=b"status=finished", headers=form).status_code == 403
    # every type of the compartment: a system-level search
    encounters = token_for(secured, "system/Encounter.read")
    assert secured.get("/fhir/Patient/p1/*", headers=auth(encounters)).status_code == 403
    assert secured.get("/fhir/Patient/p1/*?_type=Observation", headers=auth(encounters)).status_code == 403
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [{"request": {"method": "GET", "url": "Patient/p1/Encounter"}}]}
    entry = secured.post("/fhir", content=orjson.dumps(batch), headers=auth(patients_only)).json()["entry"][0]
    assert entry["response"]["status"].startswith("403")
    assert secured.get("/fhir/Patient/p1/Encounter", headers=auth(encounters)).status_code == 200
    assert secured.get("/fhir/Patient/p1/*?_type=Encounter", headers=auth(encounters)).status_code == 200
    assert secured.get("/fhir/Patient/p1/AuditEvent", headers=auth(encounters)).status_code == 403
