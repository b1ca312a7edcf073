"""FHIR XML read and written by the R4 tables (``model/xml_format.py``; xml.html, json.html).

The forms each rule of xml.html gives, then a property: random resources of every R4 type (every
element kind: primitives with ids and extensions, repeating ones with values missing, choices,
backbones, contained resources, narrative, numbers as written) go to XML and back unchanged.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from fhir_server import jsonio
from fhir_server.errors import FhirError
from fhir_server.jsonio import NEGATIVE_ZERO, ExactDecimal
from fhir_server.model import xml_format
from fhir_server.model.structure import check_structure, r4_tables
from tests.model.test_r4b_speedups import CASES
from tests.search.searchsamples import COVERAGE, ENCOUNTER, PATIENT

NS = 'xmlns="http://hl7.org/fhir"'
DAR = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"
EXAMPLES = Path(__file__).parent / "examples"


def read(xml: str) -> dict[str, Any]:
    return xml_format.xml_to_json(etree.fromstring(xml.encode(), xml_format.parser()))


def canonical(value: Any) -> Any:
    """A JSON value compared as written: a number by its text, objects without order."""
    if isinstance(value, (int, float, ExactDecimal)) and not isinstance(value, bool):
        return ("number", jsonio.dumps(value).decode())
    if isinstance(value, dict):
        return sorted((k, canonical(v)) for k, v in value.items())
    if isinstance(value, list):
        return [canonical(v) for v in value]
    return (type(value).__name__, value)


def round_trip(resource: dict[str, Any]) -> dict[str, Any]:
    return read(xml_format.json_to_xml(resource).decode())


# ----------------------------------------------------------------------------- the rules


def test_a_primitive_keeps_its_id_and_extensions_both_ways():
    """json.html#primitive: the id and extensions of a primitive are its ``_name`` part. The R4B
    model dropped the id of every primitive, in and out."""
    xml = (
        f'<Patient {NS}><birthDate id="b1" value="1990-06-05"><extension url="{DAR}"><valueCode value="unknown"/></extension>'
        '</birthDate><deceasedBoolean id="d" value="false"/></Patient>'
    )
    resource = read(xml)
    assert resource == {
        "resourceType": "Patient",
        "birthDate": "1990-06-05",
        "_birthDate": {"id": "b1", "extension": [{"url": DAR, "valueCode": "unknown"}]},
        "deceasedBoolean": False,
        "_deceasedBoolean": {"id": "d"},
    }
    out = xml_format.json_to_xml(resource).decode()
    assert f'<birthDate id="b1" value="1990-06-05"><extension url="{DAR}"><valueCode value="unknown"/></extension></birthDate>' in out
    assert '<deceasedBoolean id="d" value="false"/>' in out


def test_repeating_primitives_without_values_are_two_aligned_arrays():
    """A repeating primitive with only an extension (``<given>`` whose name part is unknown) was
    refused as "Invalid FHIR XML: 'given'"; json.html aligns the two arrays with null."""
    xml = (
        f'<Patient {NS}><name><given><extension url="{DAR}"><valueCode value="masked"/></extension></given>'
        '<given value="Siti" id="g2"/><given value="Aminah"/></name></Patient>'
    )
    resource = read(xml)
    assert resource["name"] == [
        {"given": [None, "Siti", "Aminah"], "_given": [{"extension": [{"url": DAR, "valueCode": "masked"}]}, {"id": "g2"}, None]}
    ]
    assert check_structure(resource) == []
    assert canonical(round_trip(resource)) == canonical(resource)
    only = read(f'<Patient {NS}><name><given><extension url="{DAR}"><valueCode value="masked"/></extension></given></name></Patient>')
    assert only["name"] == [{"given": [None], "_given": [{"extension": [{"url": DAR, "valueCode": "masked"}]}]}]


def test_element_ids_and_extension_urls_are_attributes_resource_ids_are_elements():
    """xml.html: ``Element.id`` and ``Extension.url`` are attributes. The R4B model wrote a
    complex element's id as a child ``<id value="..."/>``."""
    resource = {
        "resourceType": "Patient",
        "id": "p1",
        "name": [{"id": "n1", "family": "Sari"}],
        "contact": [{"id": "c1", "name": {"text": "Budi"}}],
        "extension": [{"id": "e1", "url": "http://example.org/x", "valueString": "y"}],
    }
    out = xml_format.json_to_xml(resource).decode()
    assert '<id value="p1"/>' in out
    assert '<name id="n1"><family value="Sari"/></name>' in out
    assert '<contact id="c1"><name><text value="Budi"/></name></contact>' in out
    assert '<extension id="e1" url="http://example.org/x"><valueString value="y"/></extension>' in out
    assert out.count("<id ") == 1
    assert canonical(read(out)) == canonical(resource)


def test_elements_are_written_in_definition_order_whatever_the_json_order():
    resource = {"gender": "female", "name": [{"given": ["A"], "family": "B"}], "id": "x", "resourceType": "Patient", "active": True}
    out = xml_format.json_to_xml(resource).decode()
    assert out.index("<id ") < out.index("<active ") < out.index("<name>") < out.index("<gender ")
    assert out.index("<family ") < out.index("<given ")


@pytest.mark.parametrize(
    ("xml_value", "json_value"),
    [("1.50", ExactDecimal("1.50")), ("0", ExactDecimal("0")), ("1e3", ExactDecimal("1e3")), ("-0.0", ExactDecimal("-0.0"))],
)
def test_decimals_keep_their_text(xml_value, json_value):
    quantity = f'<valueQuantity><value value="{xml_value}"/></valueQuantity>'
    resource = read(f'<Observation {NS}><status value="final"/><code><text value="t"/></code>{quantity}</Observation>')
    assert str(resource["valueQuantity"]["value"]) == str(json_value)
    assert f'<value value="{xml_value}"/>' in xml_format.json_to_xml(resource).decode()


def test_integers_and_booleans_are_json_numbers_and_booleans_negative_zero_kept():
    """The R4B model read an integer ``-0`` as ``0``."""
    resource = read(f'<Patient {NS}><active value="true"/><multipleBirthInteger value="-0"/></Patient>')
    assert resource["active"] is True
    assert jsonio.is_negative_zero(resource["multipleBirthInteger"])
    assert jsonio.dumps(resource) == b'{"resourceType":"Patient","active":true,"multipleBirthInteger":-0}'
    assert '<multipleBirthInteger value="-0"/>' in xml_format.json_to_xml({**resource, "multipleBirthInteger": NEGATIVE_ZERO}).decode()
    big = read(f'<Patient {NS}><multipleBirthInteger value="123456789012345678901234"/></Patient>')
    assert big["multipleBirthInteger"] == 123456789012345678901234  # the range check is the structure check's


@pytest.mark.parametrize("text", ["yes", "1", " true", "1.5", "+1", "01"])
def test_a_value_that_is_not_its_type_stays_text_for_the_structure_check_to_name(text):
    resource = read(f'<Patient {NS}><active value="{text}"/></Patient>')
    assert resource["active"] == text
    issues = check_structure(resource)
    assert [i.expression for i in issues] == ["Patient.active"]


def test_resources_inside_resources_and_narrative():
    xml = (
        f'<Bundle {NS}><type value="collection"/><entry><fullUrl value="urn:uuid:1"/><resource>'
        '<Patient><text><status value="generated"/><div xmlns="http://www.w3.org/1999/xhtml"><p>Siti &amp; <b>Budi</b></p></div></text>'
        '<contained><Organization><id value="o1"/><name value="RS"/></Organization></contained>'
        '<managingOrganization><reference value="#o1"/></managingOrganization></Patient></resource></entry></Bundle>'
    )
    resource = read(xml)
    patient = resource["entry"][0]["resource"]
    assert patient["text"]["div"] == '<div xmlns="http://www.w3.org/1999/xhtml"><p>Siti &amp; <b>Budi</b></p></div>'
    assert patient["contained"] == [{"resourceType": "Organization", "id": "o1", "name": "RS"}]
    assert check_structure(resource) == []
    assert canonical(round_trip(resource)) == canonical(resource)


def test_the_narrative_takes_only_its_own_namespace():
    xml = (
        f'<Patient {NS} xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation="http://hl7.org/fhir patient.xsd">'
        '<text><status value="generated"/><div xmlns="http://www.w3.org/1999/xhtml">x</div></text></Patient>'
    )
    assert read(xml)["text"]["div"] == '<div xmlns="http://www.w3.org/1999/xhtml">x</div>'


def test_a_narrative_written_with_a_namespace_prefix_is_stored_in_the_default_namespace():
    """``<h:div xmlns:h=...>`` is the same XHTML as ``<div xmlns=...>``; the JSON form of a
    narrative is the latter (the structure check refuses a div with a prefix)."""
    xml = (
        f'<Patient {NS} xmlns:h="http://www.w3.org/1999/xhtml"><text><status value="generated"/>'
        '<h:div><h:p class="c">Siti <h:b>Budi</h:b></h:p><h:img src="#a" alt="x"/></h:div></text></Patient>'
    )
    div = read(xml)["text"]["div"]
    assert div == '<div xmlns="http://www.w3.org/1999/xhtml"><p class="c">Siti <b>Budi</b></p><img src="#a" alt="x"/></div>'
    assert check_structure(read(xml)) == []
    # a prefix on the div alone, its children in the default namespace
    xml = f'<Patient {NS}><text><status value="generated"/><x:div xmlns:x="http://www.w3.org/1999/xhtml"><p xmlns="http://www.w3.org/1999/xhtml">a</p></x:div></text></Patient>'
    assert read(xml)["text"]["div"] == '<div xmlns="http://www.w3.org/1999/xhtml"><p>a</p></div>'


def test_html_named_entities_in_a_stored_narrative_are_written_as_characters():
    div = '<div xmlns="http://www.w3.org/1999/xhtml">a&nbsp;b &amp; c&eacute;</div>'
    out = xml_format.json_to_xml({"resourceType": "Patient", "text": {"status": "generated", "div": div}})
    assert "a\u00a0b &amp; c\u00e9</div>" in out.decode()


@pytest.mark.parametrize(
    ("xml", "where", "words"),
    [
        (f'<Patient {NS}><nickname value="x"/></Patient>', "Patient", "unknown element 'nickname'"),
        (f'<Patient {NS}><name><foo value="x"/></name></Patient>', "Patient.name[0]", "unknown element 'foo'"),
        (f'<Patient {NS}><active value="true" colour="red"/></Patient>', "Patient.active", "unknown attribute 'colour'"),
        (f'<Patient {NS}><name id="n" use="official"/></Patient>', "Patient.name[0]", "unknown attribute 'use'"),
        (f"<Patient {NS}><active>true</active></Patient>", "Patient.active", "the text 'true'"),
        (f'<Patient {NS}>hello<active value="true"/></Patient>', "Patient", "the text 'hello'"),
        (f'<Patient {NS}><id value="a"/><name><id value="n"/></name></Patient>', "Patient.name[0]", "unknown element 'id'"),
        ('<Patient xmlns="http://example.org"><active value="true"/></Patient>', "Patient", "not in the FHIR namespace"),
        (f"<Foo {NS}/>", "Foo", "'Foo' is not an R4 resource type"),
        (f"<Patient {NS}><contained/></Patient>", "Patient.contained[0]", "holds one resource, not 0"),
        (f'<Patient {NS}><text><status value="generated"/><div><p>x</p></div></text></Patient>', "Patient.text", "unknown element 'div'"),
    ],
)
def test_what_is_not_fhir_xml_is_named(xml, where, words):
    with pytest.raises(FhirError) as caught:
        read(xml)
    issue = caught.value.issues[0]
    assert caught.value.status == 400 and words in issue.diagnostics and issue.expression == where


def test_a_single_valued_element_twice_is_named():
    with pytest.raises(FhirError) as caught:
        read(f'<Patient {NS}><name><family value="a"/><family value="b"/></name></Patient>')
    issue = caught.value.issues[0]
    assert issue.diagnostics.startswith("The element 'family' appears more than once") and issue.expression == "Patient.name[0].family"


def test_r4_only_types_have_an_xml_form():
    """Types R4 has and R4B renamed or dropped could not be read or written as XML at all."""
    resource = {"resourceType": "MedicinalProduct", "id": "m1", "name": [{"productName": "Paracetamol 500 mg"}]}
    out = xml_format.json_to_xml(resource).decode()
    assert "<MedicinalProduct " in out and '<productName value="Paracetamol 500 mg"/>' in out
    assert read(out) == resource


def test_what_has_no_xml_form_is_refused_in_words():
    with pytest.raises(xml_format.CannotWrite, match="nickname in Patient"):
        xml_format.json_to_xml({"resourceType": "Patient", "nickname": "x"})
    with pytest.raises(xml_format.CannotWrite, match="not an R4 resource type"):
        xml_format.json_to_xml({"resourceType": "SubscriptionTopic"})


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.json")))
def test_the_project_examples_round_trip(name):
    resource = jsonio.loads((EXAMPLES / name).read_bytes())
    assert canonical(round_trip(resource)) == canonical(resource)


def test_the_valid_test_resources_round_trip():
    seeds = [PATIENT, ENCOUNTER, COVERAGE, *(c for c in CASES.values() if isinstance(c, dict) and not check_structure(c))]
    assert len(seeds) > 5
    for resource in seeds:
        assert canonical(round_trip(resource)) == canonical(resource), resource


class _Random:
    """Random resources by the R4 tables: every element kind, depth-limited."""

    TEXT = 'Siti "Aminah" <b> & \u00f1 \u65e5 \n two lines'

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.model = r4_tables()

    def resource(self, res_type: str, depth: int = 0) -> dict[str, Any]:
        out: dict[str, Any] = {"resourceType": res_type}
        self.fill(out, self.model.tables[res_type], depth)
        return out

    def fill(self, out: dict[str, Any], table: Any, depth: int) -> None:
        stems: set[str] = set()
        for name, el in table.elements.items():
            if el.stem in stems or self.rng.random() < (0.5 if depth < 2 else 0.85):
                continue
            stems.add(el.stem)  # one type of a choice
            if el.xml_attr:
                out[name] = f"{name}-{self.rng.randrange(99)}" if name == "id" else "http://example.org/ext"
            elif el.type == "xhtml":
                out[name] = '<div xmlns="http://www.w3.org/1999/xhtml"><p>Siti &amp; <i>Budi</i></p></div>'
            elif el.kind == 0:
                self.primitive(out, name, el)
            elif el.kind == 2:
                if depth < 2:
                    value = self.resource(self.rng.choice(["Patient", "Basic", "Organization"]), depth + 1)
                    out[name] = [value] if el.array else value
            elif depth < 4:
                items = []
                for _ in range(self.rng.randint(1, 2) if el.array else 1):
                    item: dict[str, Any] = {}
                    self.fill(item, el.table, depth + 1)
                    if item:
                        items.append(item)
                if items:
                    out[name] = items if el.array else items[0]

    def value(self, type_code: str) -> Any:
        pick = self.rng.choice
        if type_code == "boolean":
            return pick([True, False])
        if type_code in ("integer", "unsignedInt", "positiveInt"):
            return pick([0, 7, 2147483647, -12, NEGATIVE_ZERO]) if type_code == "integer" else pick([1, 42])
        if type_code == "decimal":
            return ExactDecimal(pick(["1.50", "0", "1e3", "-0.000001", "36.0", "12345678901234567890.123"]))
        return self.TEXT if type_code in ("string", "markdown") else f"{type_code}-{self.rng.randrange(1000)}"

    def part(self) -> dict[str, Any] | None:
        roll = self.rng.random()
        if roll < 0.6:
            return None
        part: dict[str, Any] = {"id": f"p{self.rng.randrange(99)}"} if roll < 0.8 else {}
        if roll >= 0.7:
            part["extension"] = [{"url": DAR, "valueCode": "unknown"}]
        return part

    def primitive(self, out: dict[str, Any], name: str, el: Any) -> None:
        if not el.array:
            part = self.part()
            if part and self.rng.random() < 0.3:
                out["_" + name] = part  # no value, only the part
                return
            out[name] = self.value(el.type)
            if part:
                out["_" + name] = part
            return
        values, parts = [], []
        for _ in range(self.rng.randint(1, 3)):
            part = self.part()
            values.append(None if part and self.rng.random() < 0.4 else self.value(el.type))
            parts.append(part)
        out[name] = values
        if any(parts):
            out["_" + name] = parts


@pytest.mark.parametrize("chunk", range(4))
def test_random_resources_of_every_type_go_to_xml_and_back_unchanged(chunk):
    types = sorted(r4_tables().resource_types)[chunk::4]
    gen = _Random(1000 + chunk)
    for res_type in types:
        for _ in range(3):
            resource = gen.resource(res_type)
            again = round_trip(resource)
            assert canonical(again) == canonical(resource), json.dumps(canonical(resource))[:2000]


def test_pretty_xml_is_indented_and_reads_back_the_same_narrative_untouched():
    div = '<div xmlns="http://www.w3.org/1999/xhtml"><p>Siti <b>Aminah</b></p></div>'
    resource = {"resourceType": "Patient", "text": {"status": "generated", "div": div}, "name": [{"family": "A", "given": ["B"]}]}
    out = xml_format.json_to_xml(resource, pretty=True).decode()
    assert '\n  <name>\n    <family value="A"/>\n' in out
    assert div in out
    assert read(out) == resource


def test_a_character_xml_cannot_hold_is_cannot_write_not_a_crash():
    """FHIR strings never hold control characters (the checker refuses them), but a text the
    server writes may quote one a client sent; lxml's ValueError was a 500."""
    with pytest.raises(xml_format.CannotWrite):
        xml_format.json_to_xml({"resourceType": "Basic", "code": {"text": "a\x1fb"}})
