"""JSON forms at the edge of what FHIR allows: each answered as the spec says, with words a client
can act on (json.html, http.html#mime-type, the IANA registration of application/fhir+json).
"""

from __future__ import annotations

import pytest

H = {"Content-Type": "application/fhir+json"}


@pytest.mark.parametrize("charset", ["iso-8859-1", "windows-1252", "utf-16", '"latin1"'])
def test_a_body_declared_in_another_charset_is_415_and_nothing_is_written(client, charset):
    """application/fhir+json: "charset ... If present, this must have the value UTF-8". Read as
    UTF-8 anyway, a Latin-1 body whose bytes happen to form UTF-8 was stored as other text."""
    body = '{"resourceType":"Patient","name":[{"text":"Ã©"}]}'.encode()  # valid UTF-8 either way
    r = client.post("/fhir/Patient", content=body, headers={"Content-Type": f"application/fhir+json; charset={charset}"})
    assert r.status_code == 415 and r.json()["resourceType"] == "OperationOutcome"
    assert "UTF-8" in r.json()["issue"][0]["diagnostics"]
    assert client.get("/fhir/Patient?_summary=count").json()["total"] == 0


@pytest.mark.parametrize("media", ["application/json-patch+json", "application/merge-patch+json", "application/fhir+json"])
def test_a_patch_declared_in_another_charset_is_415(client, media):
    assert client.put("/fhir/Patient/p", content=b'{"resourceType":"Patient","id":"p","gender":"male"}', headers=H).status_code == 201
    bodies = {
        "application/json-patch+json": b'[{"op":"replace","path":"/gender","value":"female"}]',
        "application/merge-patch+json": b'{"gender":"female"}',
        "application/fhir+json": b'{"resourceType":"Parameters","parameter":[{"name":"operation","part":['
        b'{"name":"type","valueCode":"replace"},{"name":"path","valueString":"Patient.gender"},'
        b'{"name":"value","valueCode":"female"}]}]}',
    }
    r = client.patch("/fhir/Patient/p", content=bodies[media], headers={"Content-Type": f"{media}; charset=iso-8859-1"})
    assert r.status_code == 415, r.text
    ok = client.patch("/fhir/Patient/p", content=bodies[media], headers={"Content-Type": f"{media}; charset=utf-8"})
    assert ok.status_code == 200 and ok.json()["gender"] == "female"


@pytest.mark.parametrize("charset", ["utf-8", "UTF-8", "utf8", '"utf-8"'])
def test_utf8_in_any_spelling_is_fine(client, charset):
    r = client.post(
        "/fhir/Patient", content=b'{"resourceType":"Patient"}', headers={"Content-Type": f"application/fhir+json;charset={charset}"}
    )
    assert r.status_code == 201, r.text


@pytest.mark.parametrize("encoding", ["utf-16", "latin-1"])
def test_a_body_that_is_not_utf8_says_so(client, encoding):
    body = '{"resourceType":"Patient","name":[{"text":"é"}]}'.encode(encoding)
    r = client.post("/fhir/Patient", content=body, headers=H)
    assert r.status_code == 400
    # it said "Malformed JSON: str is not valid UTF-8: surrogates not allowed" (orjson's words)
    assert r.json()["issue"][0]["diagnostics"] == "Body is not valid UTF-8 (FHIR JSON is UTF-8, json.html)"


@pytest.mark.parametrize(("number", "shown"), [("1.0", "1.0"), ("1e2", "1e2"), ("2.50", "2.50")])
def test_a_fraction_where_an_integer_belongs_names_what_was_sent(client, number, shown):
    """Exact decimals were named by this server's class: "got ExactDecimal"."""
    body = f'{{"resourceType":"Patient","multipleBirthInteger":{number}}}'.encode()
    issue = client.post("/fhir/Patient", content=body, headers=H).json()["issue"][0]
    assert issue["diagnostics"] == f"Expected a JSON integer (integer), got the number {shown} (a fraction or exponent)"
    assert issue["expression"] == ["Patient.multipleBirth.ofType(integer)"]


def test_resource_type_may_come_last_and_a_bom_and_blanks_are_fine(client):
    """json.html: the resourceType property is not required to come first."""
    r = client.put("/fhir/Patient/last", content=b'\xef\xbb\xbf \n{"id":"last","gender":"male","resourceType":"Patient"}\n', headers=H)
    assert r.status_code == 201, r.text
    assert client.get("/fhir/Patient/last").json()["gender"] == "male"


@pytest.mark.parametrize(
    ("element", "number"),
    [("multipleBirthInteger", "-0"), ("extension", "-0"), ("extension", "-0.0")],
)
def test_negative_zero_is_kept_as_written(client, element, number):
    """FHIR's integer and decimal grammars allow ``-0``: it was stored as ``0`` (orjson reads it as
    the integer 0), while ``-0.0`` kept its text. Both are kept now, an integer ``-0`` is an integer."""
    value = (
        number
        if element == "multipleBirthInteger"
        else f'[{{"url":"https://example.org/x","valueDecimal":{number}}},{{"url":"https://example.org/y","valueInteger":{number}}}]'
    )
    if element == "extension" and "." in number:
        value = f'[{{"url":"https://example.org/x","valueDecimal":{number}}}]'
    r = client.put("/fhir/Patient/zero", content=f'{{"resourceType":"Patient","id":"zero","{element}":{value}}}'.encode(), headers=H)
    assert r.status_code in (200, 201), r.text
    assert f'"{element}":{value}'.encode() in client.get("/fhir/Patient/zero").content


def test_negative_zero_is_no_positive_int(client):
    sampled = '{"origin":{"value":1},"period":1,"dimensions":-0,"data":"1"}'
    body = f'{{"resourceType":"Observation","status":"final","code":{{"text":"x"}},"valueSampledData":{sampled}}}'.encode()
    r = client.post("/fhir/Observation", content=body, headers=H)
    assert r.status_code in (400, 422) and "dimensions" in r.text
