"""JSON and XML both ways: _format, Accept, Content-Type (http.html#mime-type)."""

from __future__ import annotations

import re
from html import unescape

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
    r = client.post(
        "/fhir/Patient", content=PATIENT_XML, headers={"Content-Type": "application/fhir+xml", "Accept": "application/fhir+json"}
    )
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
    assert r.headers["content-type"].startswith("application/fhir+xml")  # no Accept: the body's format
    assert b"<OperationOutcome" in r.content


def test_malformed_xml_is_400(client):
    r = client.post("/fhir/Patient", content=b"<Patient><gender", headers={"Content-Type": "application/xml"})
    assert r.status_code == 400


def test_without_accept_the_answer_is_in_the_format_of_the_body(client):
    """A client that sends XML and no Accept (or only */*) reads XML, as HAPI answers it: the
    answer was JSON, which an XML-only SIMRS has no parser for. An Accept that names a format wins."""
    for accept in (None, "*/*", "application/*"):
        headers = {"Content-Type": "application/fhir+xml", **({"Accept": accept} if accept else {})}
        if accept is None:
            headers["Accept"] = ""  # httpx sends */* unless told
        created = client.post("/fhir/Patient", content=PATIENT_XML, headers=headers)
        assert created.status_code == 201, created.text
        assert created.headers["content-type"].startswith("application/fhir+xml"), accept
        assert b"<Patient" in created.content and b'<family value="Aminah"/>' in created.content
        refused = client.post("/fhir/Patient", content=PATIENT_XML.replace(b"1990-06-05", b"1990-13-05"), headers=headers)
        assert refused.status_code == 400
        assert refused.headers["content-type"].startswith("application/fhir+xml") and b"<OperationOutcome" in refused.content
    bundle = (
        b'<Bundle xmlns="http://hl7.org/fhir"><type value="transaction"/><entry><resource>'
        + PATIENT_XML.split(b"?>", 1)[1]
        + b'</resource><request><method value="POST"/><url value="Patient"/></request></entry></Bundle>'
    )
    answer = client.post("/fhir", content=bundle, headers={"Content-Type": "application/fhir+xml"})
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("application/fhir+xml")
    # Accept naming a format, or _format, decide; a JSON body without Accept is answered in JSON
    named = client.post(
        "/fhir/Patient", content=PATIENT_XML, headers={"Content-Type": "application/fhir+xml", "Accept": "application/fhir+json"}
    )
    assert named.headers["content-type"].startswith("application/fhir+json")
    by_param = client.post("/fhir/Patient?_format=json", content=PATIENT_XML, headers={"Content-Type": "application/fhir+xml"})
    assert by_param.headers["content-type"].startswith("application/fhir+json")
    assert post(client, PATIENT).headers["content-type"].startswith("application/fhir+json")


def test_errors_follow_the_requested_format(client):
    r = client.get("/fhir/Patient/missing?_format=xml")
    assert r.status_code == 404
    assert b"<OperationOutcome" in r.content


def test_json_format_parameter_wins_over_accept(client):
    r = client.get("/fhir/metadata?_format=json", headers={"Accept": "application/fhir+xml"})
    assert r.headers["content-type"].startswith("application/fhir+json")


# ----------------------------------------------------------------------------- XML by the R4 tables

DAR = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"
XML_H = {"Content-Type": "application/fhir+xml"}


def test_xml_primitive_ids_and_value_less_repeats_are_stored_and_sent_back(client):
    """The R4B model dropped every primitive's id and refused a repeating primitive with only an
    extension ("Invalid FHIR XML: 'given'"); both are R4 (json.html#primitive)."""
    body = (
        '<Patient xmlns="http://hl7.org/fhir"><name id="n1"><given><extension url="' + DAR + '"><valueCode value="masked"/>'
        '</extension></given><given id="g2" value="Siti"/></name><birthDate id="b1" value="1990-06-05"/>'
        '<multipleBirthInteger value="-0"/></Patient>'
    )
    r = client.post("/fhir/Patient", content=body.encode(), headers=XML_H)
    assert r.status_code == 201, r.text
    pid = r.headers["location"].split("/")[-3]
    stored = client.get(f"/fhir/Patient/{pid}").content
    assert (
        b'"name":[{"id":"n1","given":[null,"Siti"],"_given":[{"extension":[{"url":"'
        + DAR.encode()
        + b'","valueCode":"masked"}]},{"id":"g2"}]}]'
        in stored
    )
    assert b'"_birthDate":{"id":"b1"}' in stored and b'"multipleBirthInteger":-0' in stored
    xml = client.get(f"/fhir/Patient/{pid}?_format=xml").text
    assert (
        '<name id="n1"><given><extension url="'
        + DAR
        + '"><valueCode value="masked"/></extension></given><given id="g2" value="Siti"/></name>'
        in xml
    )
    assert '<birthDate id="b1" value="1990-06-05"/>' in xml and '<multipleBirthInteger value="-0"/>' in xml


def test_complex_element_ids_are_attributes_in_xml(client):
    """xml.html: an element's id is an attribute; the R4B model wrote ``<name><id value="n1"/>``."""
    body = (
        b'{"resourceType":"Patient","id":"xid","name":[{"id":"n1","family":"Sari"}],'
        b'"telecom":[{"id":"t1","system":"phone","value":"0812"}]}'
    )
    assert client.put("/fhir/Patient/xid", content=body, headers={"Content-Type": "application/fhir+json"}).status_code == 201
    for r in (client.get("/fhir/Patient/xid?_format=xml"), client.get("/fhir/Patient?_id=xid&_format=xml")):
        assert r.status_code == 200, r.text
        assert '<name id="n1"><family value="Sari"/></name>' in r.text and '<telecom id="t1">' in r.text
        assert '<id value="n1"/>' not in r.text


def test_r4_only_types_are_read_and_written_as_xml(client):
    """MedicinalProduct is R4 (R4B renamed it): it was 406 to read as XML and 400 to send as XML."""
    body = b'<MedicinalProduct xmlns="http://hl7.org/fhir"><name><productName value="Paracetamol 500 mg"/></name></MedicinalProduct>'
    r = client.post("/fhir/MedicinalProduct", content=body, headers=XML_H)
    assert r.status_code == 201, r.text
    mid = r.headers["location"].split("/")[-3]
    assert client.get(f"/fhir/MedicinalProduct/{mid}").json()["name"] == [{"productName": "Paracetamol 500 mg"}]
    xml = client.get(f"/fhir/MedicinalProduct/{mid}", headers={"Accept": "application/fhir+xml"})
    assert xml.status_code == 200 and '<productName value="Paracetamol 500 mg"/>' in xml.text


def test_an_xml_element_the_type_does_not_have_is_400_naming_where(client):
    body = b'<Patient xmlns="http://hl7.org/fhir"><name><family value="A"/><nickname value="B"/></name></Patient>'
    r = client.post("/fhir/Patient", content=body, headers={**XML_H, "Accept": "application/fhir+json"})
    assert r.status_code == 400, r.text
    issue = r.json()["issue"][0]
    assert issue["diagnostics"] == "Invalid FHIR XML: unknown element 'nickname'" and issue["expression"] == ["Patient.name[0]"]
    assert client.get("/fhir/Patient?_summary=count").json()["total"] == 0


def test_pretty_xml(client):
    pid = post(client, PATIENT).json()["id"]
    for r in (client.get(f"/fhir/Patient/{pid}?_format=xml&_pretty=true"), client.get(f"/fhir/Patient?_id={pid}&_format=xml&_pretty=true")):
        assert r.status_code == 200 and "\n  <" in r.text, r.text
    assert "\n" not in client.get(f"/fhir/Patient/{pid}?_format=xml").text.partition("?>")[2].strip()


def _links(text: str) -> dict[str, str]:
    found = re.findall(r'<link><relation value="([a-z]+)"/><url value="([^"]+)"/></link>', text)
    return {relation: unescape(url) for relation, url in found}


def test_the_links_of_an_xml_bundle_keep_asking_for_xml(client):
    """A client that asked for XML by ``_format`` followed ``next`` and got JSON: the links of
    searches, history and $everything dropped ``_format`` (and ``_pretty``)."""
    pids = [post(client, PATIENT).json()["id"] for _ in range(3)]
    for first in (
        "/fhir/Patient?_count=1&_format=xml",
        "/fhir/Patient/_history?_count=1&_format=xml",
        f"/fhir/Patient/{pids[0]}/$everything?_count=1&_format=xml",
    ):
        r = client.get(first)
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/fhir+xml"), r.text
        links = _links(r.text)
        assert "next" in links or "$everything" in first, links
        for relation, url in links.items():
            assert "_format=xml" in url, (relation, url)
        if "next" in links:
            page = client.get(links["next"].removeprefix("http://testserver"))
            assert page.status_code == 200 and page.text.startswith("<?xml"), page.text
    pretty = client.get("/fhir/Patient?_count=1&_pretty=true").json()
    assert all("_pretty=true" in link["url"] for link in pretty["link"])
    plain = client.get("/fhir/Patient?_count=1").json()
    assert not any("_format" in link["url"] or "_pretty" in link["url"] for link in plain["link"])


def test_an_error_quoting_a_control_character_is_answered_in_xml_too(client):
    """``PUT /fhir/%1F/0`` with an XML body (found by the schemathesis fuzz once answers followed
    the body's format): the 404 quotes the type, whose control character XML cannot hold; it was
    a 500. The diagnostics write it as \\x1f, in XML and JSON alike."""
    for headers in ({"Content-Type": "application/fhir+xml"}, {"Accept": "application/fhir+xml"}, {"Accept": "application/fhir+json"}):
        r = client.put("/fhir/%1F/0", content=b"<data></data>", headers=headers)
        assert 400 <= r.status_code < 500, r.text
        assert "\\x1f" in r.text and "\x1f" not in r.text
