"""Decimals keep their precision through FHIR XML, both ways (datatypes.html#decimal: "the
precision of the decimal value has significance"; xml.html: a value attribute carries the text).

A JSON ``1.50`` was sent in XML as ``1.5``, ``0`` as ``0.0`` and ``1e3`` as ``1000.0`` (the
R4B model turned them into floats), and an XML ``1.50`` was stored as ``1.5``.
"""

from __future__ import annotations

import re

import pytest

OBSERVATION_JSON = (
    b'{"resourceType":"Observation","status":"final","code":{"text":"Kadar"},'
    b'"valueQuantity":{"value":1.50,"unit":"mg/dL"},'
    b'"component":[{"code":{"text":"a"},"valueQuantity":{"value":0}},'
    b'{"code":{"text":"b"},"valueQuantity":{"value":1e3}},'
    b'{"code":{"text":"c"},"valueQuantity":{"value":0.0000001}},'
    b'{"code":{"text":"d"},"valueQuantity":{"value":-12.250}},'
    b'{"code":{"text":"e"},"valueQuantity":{"value":36.0}}]}'
)

OBSERVATION_XML = (
    b'<Observation xmlns="http://hl7.org/fhir"><status value="final"/><code><text value="Kadar"/></code>'
    b'<valueQuantity><value value="1.50"/><unit value="mg/dL"/></valueQuantity>'
    b'<component><code><text value="a"/></code><valueQuantity><value value="0"/></valueQuantity></component>'
    b'<component><code><text value="b"/></code><valueQuantity><value value="0.0000001"/></valueQuantity></component>'
    b'<component><code><text value="c"/></code><valueQuantity><value value="36.0"/></valueQuantity></component>'
    b"</Observation>"
)


def _xml_values(content: bytes) -> list[str]:
    return re.findall(rb'<value value="([^"]*)"/>', content)


def _create(client, body: bytes, content_type: str) -> str:
    r = client.post("/fhir/Observation", content=body, headers={"Content-Type": content_type})
    assert r.status_code == 201, r.text
    return r.headers["location"].split("/")[-3]


def test_json_decimals_are_sent_in_xml_as_written(client):
    oid = _create(client, OBSERVATION_JSON, "application/fhir+json")
    r = client.get(f"/fhir/Observation/{oid}", headers={"Accept": "application/fhir+xml"})
    assert r.status_code == 200, r.text
    # 1e3 as written: E notation is a FHIR decimal too
    assert _xml_values(r.content) == [b"1.50", b"0", b"1e3", b"0.0000001", b"-12.250", b"36.0"]


def test_xml_decimals_are_stored_as_written(client):
    oid = _create(client, OBSERVATION_XML, "application/fhir+xml")
    raw = client.get(f"/fhir/Observation/{oid}").content
    assert b'"value":1.50' in raw
    assert b'"value":0,' in raw or b'"value":0}' in raw
    assert b'"value":0.0000001' in raw
    assert b'"value":36.0' in raw
    again = client.get(f"/fhir/Observation/{oid}?_format=xml")
    assert _xml_values(again.content) == [b"1.50", b"0", b"0.0000001", b"36.0"]


@pytest.mark.parametrize("value", [b"1.50", b"0", b"100", b"-0.50"])
def test_decimals_inside_a_searchset_in_xml(client, value):
    body = OBSERVATION_JSON.replace(b"1.50", value, 1).replace(b'"Kadar"', b'"xml-dec-' + value + b'"')
    _create(client, body, "application/fhir+json")
    r = client.get("/fhir/Observation", params={"code:text": f"xml-dec-{value.decode()}", "_format": "xml"})
    assert r.status_code == 200, r.text
    assert _xml_values(r.content)[0] == value


def test_decimals_of_a_resource_inside_an_xml_transaction_are_stored_as_written(client):
    bundle = (
        b'<Bundle xmlns="http://hl7.org/fhir"><type value="transaction"/><entry>'
        b'<fullUrl value="urn:uuid:0b7f7e0a-1a0e-4a57-9d33-6a1f0a7b2f01"/><resource>'
        b'<Observation><status value="final"/><code><text value="K"/></code>'
        b'<valueQuantity><value value="2.50"/></valueQuantity></Observation>'
        b'</resource><request><method value="POST"/><url value="Observation"/></request></entry></Bundle>'
    )
    r = client.post("/fhir", content=bundle, headers={"Content-Type": "application/fhir+xml", "Accept": "application/fhir+json"})
    assert r.status_code == 200, r.text
    location = r.json()["entry"][0]["response"]["location"].split("/_history")[0]
    assert b'"valueQuantity":{"value":2.50}' in client.get(f"/fhir/{location}").content
