"""A JSON object that names a property twice is refused wherever a client's JSON comes in.

R4 json.html: a resource is represented as a JSON object whose properties are its elements, each
element once (a repeating element is one property holding an array); RFC 8259 leaves repeated
names to the parser, and orjson kept the last value silently, so
``{"gender": "male", "gender": "female"}`` was stored as female. Every body a client sends
goes through ``jsonio.loads_client``: 400 with an OperationOutcome naming the property and where.
"""

from __future__ import annotations

import base64

import orjson
import pytest

from tests.bundles import entries

H = {"Content-Type": "application/fhir+json"}
DUPLICATE_GENDER = b'{"resourceType":"Patient","gender":"male","gender":"female"}'
DUPLICATE_FAMILY = b'{"resourceType":"Patient","name":[{"given":["Siti"]},{"family":"Aminah","family":"Rahma"}]}'


def _refused(r, expression: str | None, prop: str) -> None:
    assert r.status_code == 400, r.text
    issue = r.json()["issue"][0]
    assert r.json()["resourceType"] == "OperationOutcome" and issue["code"] == "structure"
    assert f"'{prop}' appears more than once" in issue["diagnostics"]
    if expression is not None:
        assert issue["expression"] == [expression], issue


def _patients(client) -> int:
    return int(client.get("/fhir/Patient?_summary=count").json()["total"])


@pytest.mark.parametrize(
    ("body", "expression", "prop"),
    [
        (DUPLICATE_GENDER, "Patient.gender", "gender"),
        (DUPLICATE_FAMILY, "Patient.name[1].family", "family"),
        # blanks around the colon, as some serialisers write them
        (b'{ "resourceType" : "Patient" ,\n "gender" : "male",\n "gender"\t: "male" }', "Patient.gender", "gender"),
        # the same name written with an escape is the same name
        (b'{"resourceType":"Patient","gender":"male","gend\\u0065r":"female"}', "Patient.gender", "gender"),
        # an exact-decimal body (1.50) takes the other parser: same rule
        (
            b'{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":1.50,"value":2.50}}',
            "Observation.value.ofType(Quantity).value",
            "value",
        ),
        (b'{"resourceType":"Patient","resourceType":"Patient"}', "Patient", "resourceType"),  # not an element: the resource
    ],
)
def test_a_create_with_a_repeated_property_is_400_and_writes_nothing(client, body, expression, prop):
    _refused(client.post(f"/fhir/{orjson.loads(body)['resourceType']}", content=body, headers=H), expression, prop)
    assert _patients(client) == 0
    assert client.get("/fhir/Observation?_summary=count").json()["total"] == 0


def test_update_conditional_create_and_validate_refuse_it_too(client):
    body = b'{"resourceType":"Patient","id":"p1","gender":"male","gender":"female"}'
    _refused(client.put("/fhir/Patient/p1", content=body, headers=H), "Patient.gender", "gender")
    _refused(client.post("/fhir/Patient", content=body, headers={**H, "If-None-Exist": "identifier=x|1"}), "Patient.gender", "gender")
    _refused(client.post("/fhir/Patient/$validate", content=DUPLICATE_FAMILY, headers=H), "Patient.name[1].family", "family")
    parameters = b'{"resourceType":"Parameters","parameter":[{"name":"resource","name":"mode","valueCode":"create"}]}'
    _refused(client.post("/fhir/Patient/$validate", content=parameters, headers=H), "Parameters.parameter[0].name", "name")
    assert client.get("/fhir/Patient/p1").status_code == 404


def test_the_same_name_in_different_objects_and_marks_inside_strings_are_fine(client):
    """Only a repetition within one object is refused; a ``":`` inside a string value (which
    makes the cheap count differ) is looked at exactly and accepted."""
    body = b'{"resourceType":"Patient","name":[{"family":"A","text":"say \\"x\\": y"},{"family":"B"}],"gender":"male"}'
    r = client.post("/fhir/Patient", content=body, headers=H)
    assert r.status_code == 201, r.text
    assert [n["family"] for n in r.json()["name"]] == ["A", "B"]


@pytest.mark.parametrize("kind", ["transaction", "batch"])
def test_a_bundle_entry_with_a_repeated_property_is_400(client, kind):
    """The Bundle is one body: a repetition anywhere in it refuses it (an entry cannot be
    read unambiguously, so a batch cannot answer it entry by entry either)."""
    ok = '{"resource":{"resourceType":"Patient","id":"a"},"request":{"method":"PUT","url":"Patient/a"}}'
    bad = '{"resource":{"resourceType":"Patient","id":"b","active":true,"active":false},"request":{"method":"PUT","url":"Patient/b"}}'
    body = f'{{"resourceType":"Bundle","type":"{kind}","entry":[{ok},{bad}]}}'.encode()
    _refused(client.post("/fhir", content=body, headers=H), "Bundle.entry[1].resource.active", "active")
    assert _patients(client) == 0


def _patient(client) -> None:
    r = client.put("/fhir/Patient/p1", content=b'{"resourceType":"Patient","id":"p1","gender":"male"}', headers=H)
    assert r.status_code == 201, r.text


@pytest.mark.parametrize(
    ("content_type", "body", "prop"),
    [
        ("application/json-patch+json", b'[{"op":"replace","path":"/gender","path":"/birthDate","value":"female"}]', "path"),
        ("application/merge-patch+json", b'{"gender":"female","gender":"other"}', "gender"),
        (
            "application/fhir+json",
            b'{"resourceType":"Parameters","parameter":[{"name":"operation","part":[{"name":"type","valueCode":"replace",'
            b'"valueCode":"delete"},{"name":"path","valueString":"Patient.gender"},{"name":"value","valueCode":"female"}]}]}',
            "valueCode",
        ),
    ],
)
def test_patch_bodies_with_a_repeated_property_are_400(client, content_type, body, prop):
    _patient(client)
    _refused(client.patch("/fhir/Patient/p1", content=body, headers={"Content-Type": content_type}), None, prop)
    assert client.get("/fhir/Patient/p1").json()["gender"] == "male"


def test_a_binary_patch_entry_with_a_repeated_property_is_400(client):
    _patient(client)
    data = base64.b64encode(b'[{"op":"replace","op":"remove","path":"/gender","value":"female"}]').decode()
    entry = {
        "resource": {"resourceType": "Binary", "contentType": "application/json-patch+json", "data": data},
        "request": {"method": "PATCH", "url": "Patient/p1"},
    }
    r = client.post("/fhir", content=orjson.dumps({"resourceType": "Bundle", "type": "batch", "entry": [entry]}), headers=H)
    assert r.status_code == 200, r.text
    (answer,) = entries(r.json())
    assert answer["response"]["status"].startswith("400")
    issue = answer["response"]["outcome"]["issue"][0]
    assert "'op' appears more than once" in issue["diagnostics"] and issue["expression"] == ["Bundle.entry[0].resource.data"]
    assert client.get("/fhir/Patient/p1").json()["gender"] == "male"


def test_an_operation_body_of_other_json_names_the_place(client):
    """Not a resource (a national import's native JSON): the diagnostics say where instead."""
    body = b'{"response":{"content":[{"NIK":"3171","NIK":"3172"}]}}'
    r = client.post("/fhir/Patient/$import-dukcapil", content=body, headers={"Content-Type": "application/json"})
    _refused(r, None, "NIK")
    assert "at response.content[0]" in r.json()["issue"][0]["diagnostics"]


X = {"Content-Type": "application/fhir+xml", "Accept": "application/fhir+json"}  # the outcomes read as JSON
NS = 'xmlns="http://hl7.org/fhir"'


@pytest.mark.parametrize(
    ("body", "expression", "name"),
    [
        (f'<Patient {NS}><gender value="male"/><gender value="female"/></Patient>', "Patient.gender", "gender"),
        (
            f'<Patient {NS}><name><given value="A"/></name><name><family value="B"/><!-- c --><family value="C"/></name></Patient>',
            "Patient.name[1].family",
            "family",
        ),
        (
            f'<Patient {NS}><contained><Organization><name value="a"/><name value="b"/></Organization></contained></Patient>',
            "Patient.contained[0].name",
            "name",
        ),
        (
            f'<Bundle {NS}><type value="transaction"/><entry><resource><Patient><active value="true"/><active value="false"/>'
            '</Patient></resource><request><method value="POST"/><url value="Patient"/></request></entry></Bundle>',
            "Bundle.entry[0].resource.active",
            "active",
        ),
    ],
)
def test_xml_with_a_single_valued_element_given_twice_is_400(client, body, expression, name):
    """The same surprise in XML (xml.html: an element of cardinality 0..1 appears at most once):
    the XML model kept the last one silently."""
    url = "/fhir" if body.startswith("<Bundle") else "/fhir/Patient"
    r = client.post(url, content=body.encode(), headers=X)
    assert r.status_code == 400, r.text
    issue = r.json()["issue"][0]
    assert issue["diagnostics"].startswith(f"The element '{name}' appears more than once") and issue["expression"] == [expression]
    assert _patients(client) == 0


def test_xml_repeating_elements_and_comments_are_fine(client):
    body = f'<Patient {NS}><!-- a --><name><given value="A"/><given value="B"/></name><name><family value="C"/></name></Patient>'
    r = client.post("/fhir/Patient", content=body.encode(), headers=X)
    assert r.status_code == 201, r.text
    assert [n.get("given") for n in r.json()["name"]] == [["A", "B"], None]
