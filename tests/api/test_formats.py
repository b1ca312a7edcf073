"""JSON and XML both ways: _format, Accept, Content-Type (http.html#mime-type)."""

from __future__ import annotations

from tests.api.test_rest_crud import PATIENT, post

PATIENT_XML = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<Patient xmlns="http://hl7.org/fhir"><active value="true"/>'
    b'<name><family value="Aminah"/><given value="Siti"/></name>'
    b'<gender value="female"/><birthDate value="1990-06-05"/></Patient>'
)


def test_read_as_xml_by_format_parameter_and_accept(client):
    pid = post(client, PATIENT).json()["id"]
    for r in (
        client.get(f"/fhir/Patient/{pid}?_format=xml"),
        client.get(f"/fhir/Patient/{pid}", headers={"Accept": "application/fhir+xml"}),
    ):
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("application/fhir+xml")
        assert b'<Patient xmlns="http://hl7.org/fhir">' in r.content
        assert f'<id value="{pid}"/>'.encode() in r.content


def test_create_from_xml(client):
    r = client.post("/fhir/Patient", content=PATIENT_XML, headers={"Content-Type": "application/fhir+xml"})
    assert r.status_code == 201, r.text
    stored = client.get(f"/fhir/Patient/{r.json()['id']}").json()
    assert stored["name"][0]["family"] == "Aminah"
    assert stored["active"] is True


def test_xml_with_entities_is_refused(client):
    evil = (
        b'<?xml version="1.0"?><!DOCTYPE p [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
        b'<Patient xmlns="http://hl7.org/fhir"><id value="&b;"/></Patient>'
    )
    r = client.post("/fhir/Patient", content=evil, headers={"Content-Type": "application/fhir+xml"})
    assert r.status_code == 400
    assert r.json()["resourceType"] == "OperationOutcome"


def test_malformed_xml_is_400(client):
    r = client.post("/fhir/Patient", content=b"<Patient><gender", headers={"Content-Type": "application/xml"})
    assert r.status_code == 400


def test_errors_follow_the_requested_format(client):
    r = client.get("/fhir/Patient/missing?_format=xml")
    assert r.status_code == 404
    assert b"<OperationOutcome" in r.content


def test_json_format_parameter_wins_over_accept(client):
    r = client.get("/fhir/metadata?_format=json", headers={"Accept": "application/fhir+xml"})
    assert r.headers["content-type"].startswith("application/fhir+json")
