"""FHIR XML (xml.html) to the JSON this server stores, and back, by the R4 tables.

The R4 tables (``structure.r4_tables``: each type's elements in definition order, which are
primitives, which repeat, which are XML attributes) say all the two forms differ by:

* a primitive is ``<name value="..." id="...">`` plus ``<extension>`` children; in JSON its
  value is ``name`` (a JSON boolean or number for those types, the text as written: ``1.50``,
  ``-0`` and 24-digit integers stay so) and its id and extensions are ``_name``; a repeating one
  is two arrays aligned with nulls;
* ``Element.id`` and ``Extension.url`` are attributes; a resource's own ``id`` is an element;
* a Resource-typed element (``contained``, ``Bundle.entry.resource``) wraps the resource's
  element: ``<contained><Patient>...</Patient></contained>``;
* ``Narrative.div`` is XHTML markup, a string in JSON;
* XML writes elements in definition order; JSON objects have none.

fhir.resources did this before through the R4B models, which lost what they do not model: every
primitive's ``id``, a repeating primitive without any value (``<given>`` with only an
extension was refused), ``-0``; wrote a complex element's ``id`` as a child ``<id value>``
instead of an attribute; and could not write the R4-only types at all.

Reading is lenient about order (the content is kept) and strict about content: an unknown
element or attribute, text where none belongs, a second single-valued element are 400 naming
where. What is read is then validated as any JSON body is.
"""

from __future__ import annotations

import html.entities
import re
from copy import deepcopy
from functools import cache
from typing import Any

import orjson
from lxml import etree  # type: ignore[import-untyped]

from fhir_server.errors import FhirError
from fhir_server.jsonio import NEGATIVE_ZERO, ExactDecimal
from fhir_server.model.definitions import load_definitions
from fhir_server.model.structure import _PRIM, _RESOURCE, r4_tables  # its tables' element kinds

FHIR_NS = "http://hl7.org/fhir"
XHTML_NS = "http://www.w3.org/1999/xhtml"
_XHTML = "{" + XHTML_NS + "}"
_FHIR = "{" + FHIR_NS + "}"
_INTEGERS = frozenset({"integer", "positiveInt", "unsignedInt"})
_XML_ENTITIES = frozenset({"amp", "lt", "gt", "quot", "apos"})
_NAMED_ENTITY = re.compile(r"&([A-Za-z][A-Za-z0-9]*);")


def parser() -> Any:
    # no DTDs, entities or network; comments and processing instructions are not content
    return etree.XMLParser(resolve_entities=False, no_network=True, remove_comments=True, remove_pis=True, huge_tree=False)


@cache
def _value_regex(type_code: str) -> re.Pattern[str] | None:
    """The R4 regex of a primitive's value (the text of its XML value attribute)."""
    regex = load_definitions()["primitives"].get(type_code)
    return re.compile(regex) if regex else None


def _json_value(text: str, type_code: str) -> Any:
    """An XML value attribute as JSON: booleans and numbers typed when the text is one (anything
    else stays text, which the structure check then reports as the wrong JSON type)."""
    if type_code == "boolean":
        return True if text == "true" else False if text == "false" else text
    if type_code in _INTEGERS or type_code == "decimal":
        regex = _value_regex(type_code)
        if regex is None or not regex.fullmatch(text):
            return text
        if type_code == "decimal":
            return ExactDecimal(text)
        return NEGATIVE_ZERO if text == "-0" else int(text)
    return text


# ----------------------------------------------------------------------------- reading


def xml_to_json(root: Any) -> dict[str, Any]:
    """The JSON resource an lxml element (a FHIR XML resource) holds; FhirError 400 naming what
    is not FHIR XML."""
    return _Reader().resource(root, None)


def _local(tag: Any) -> tuple[str | None, str]:
    """(namespace, local name) of an lxml tag."""
    if tag[0] == "{":
        ns, _, name = tag[1:].partition("}")
        return ns, name
    return None, tag


class _Reader:
    def __init__(self) -> None:
        self.model = r4_tables()

    def fail(self, diagnostics: str, where: str | None) -> FhirError:
        return FhirError.of(400, "structure", f"Invalid FHIR XML: {diagnostics}", where)

    def resource(self, node: Any, path: str | None) -> dict[str, Any]:
        ns, name = _local(node.tag)
        where = path or name
        if ns != FHIR_NS:
            raise self.fail(f"the element '{name}' is not in the FHIR namespace ({FHIR_NS})", where)
        if name not in self.model.resource_types:
            raise self.fail(f"'{name}' is not an R4 resource type", where)
        out: dict[str, Any] = {"resourceType": name}
        self.attributes(out, node, self.model.tables[name], where)
        self.children(out, node, self.model.tables[name], where)
        return out

    def attributes(self, out: dict[str, Any], node: Any, table: Any, path: str) -> None:
        """``Element.id`` and ``Extension.url``; attributes of other namespaces (``xsi:...``) are
        not content."""
        for key, value in node.attrib.items():
            ns, name = _local(key)
            if ns is not None:
                continue
            el = table.elements.get(name)
            if el is None or not el.xml_attr:
                raise self.fail(f"unknown attribute '{name}'", path)
            out[name] = value

    def children(self, out: dict[str, Any], node: Any, table: Any, path: str) -> None:
        self.no_text(node.text, path)
        counts: dict[str, int] = {}
        repeated: dict[str, list[tuple[Any, dict[str, Any] | None]]] = {}  # a repeating primitive's parts
        for child in node:
            self.no_text(child.tail, path)
            ns, name = _local(child.tag)
            el = table.elements.get(name)
            if el is None or el.xml_attr or ns != (XHTML_NS if el.type == "xhtml" else FHIR_NS):
                raise self.fail(f"unknown element '{name}'" + (f" (namespace {ns})" if ns not in (FHIR_NS, None) else ""), path)
            index = counts[name] = counts.get(name, -1) + 1
            if not el.array and index:
                raise FhirError.of(
                    400, "structure", f"The element '{name}' appears more than once where R4 allows it once (xml.html)", f"{path}.{el.step}"
                )
            where = f"{path}.{el.step}" + (f"[{index}]" if el.array else "")
            value: Any
            if el.type == "xhtml":
                value = _xhtml_text(child)
            elif el.kind == _PRIM:
                value, extra = self.primitive(child, el, where)
                if el.array:
                    repeated.setdefault(name, []).append((value, extra))
                    continue
                if extra:
                    out["_" + name] = extra
                if value is None and extra:
                    continue
                value = "" if value is None else value  # <gender/>: the structure check names the empty value
            elif el.kind == _RESOURCE:
                value = self.wrapped(child, where)
            else:
                value = {}
                self.attributes(value, child, el.table, where)
                self.children(value, child, el.table, where)
            if el.array:
                out.setdefault(name, []).append(value)
            else:
                out[name] = value
        for name, parts in repeated.items():
            # JSON's two aligned arrays (json.html#primitive): null where one part is absent
            out[name] = [("" if extra is None else None) if value is None else value for value, extra in parts]
            if any(extra for _, extra in parts):
                out["_" + name] = [extra or None for _, extra in parts]

    def primitive(self, node: Any, el: Any, where: str) -> tuple[Any, dict[str, Any] | None]:
        """(the JSON value or None, the ``_name`` object or None) of a primitive element."""
        value: Any = None
        extra: dict[str, Any] = {}
        for key, text in node.attrib.items():
            ns, name = _local(key)
            if ns is not None:
                continue
            if name == "value":
                value = _json_value(text, el.type)
            elif name == "id":
                extra["id"] = text
            else:
                raise self.fail(f"unknown attribute '{name}'", where)
        self.children(extra, node, self.model.element_table, where)
        return value, extra or None

    def wrapped(self, node: Any, where: str) -> dict[str, Any]:
        """``<contained><Patient>...</Patient></contained>``: the one resource inside."""
        if any(_local(key)[0] is None for key in node.attrib):
            raise self.fail("a resource element has no attributes", where)
        self.no_text(node.text, where)
        inner = list(node)
        if len(inner) != 1:
            raise self.fail(f"a resource element holds one resource, not {len(inner)}", where)
        self.no_text(inner[0].tail, where)
        return self.resource(inner[0], where)

    def no_text(self, text: str | None, where: str) -> None:
        if text and text.strip():
            raise self.fail(f"the text '{text.strip()[:40]}' where only elements belong (a value is a value attribute)", where)


def _xhtml_text(node: Any) -> str:
    """A narrative ``<div>`` as the JSON string: the markup with only its own namespace declared
    (namespaces declared on the resource are not part of it), XHTML in the default namespace
    (``<h:div xmlns:h=...>`` is the same markup, which JSON writes as ``<div xmlns=...>``)."""
    if any(el.prefix is not None and el.tag.startswith(_XHTML) for el in node.iter(etree.Element)):
        div = _unprefixed(node, None)
    else:
        div = deepcopy(node)
    div.tail = None
    etree.cleanup_namespaces(div)
    return str(etree.tostring(div, encoding="unicode", with_tail=False))


def _unprefixed(node: Any, parent: Any) -> Any:
    """A copy of ``node`` whose XHTML elements use the default namespace (lxml keeps an
    element's prefix, so the tree is rebuilt under a root that declares XHTML as the default)."""
    if parent is None:
        copy = etree.Element(node.tag, dict(node.attrib), nsmap={None: XHTML_NS})
    else:
        copy = etree.SubElement(parent, node.tag, dict(node.attrib))
    copy.text, copy.tail = node.text, node.tail
    for child in node:  # elements only: the parser drops comments and processing instructions
        _unprefixed(child, copy)
    return copy


# ----------------------------------------------------------------------------- writing


class CannotWrite(ValueError):
    """The JSON holds something FHIR XML has no place for."""


def json_to_xml(resource: dict[str, Any], *, pretty: bool = False) -> bytes:
    """A JSON resource as FHIR XML bytes (with an XML declaration), elements in R4 order;
    ``pretty``: indented (``_pretty=true``), the narrative's markup as it was."""
    try:
        root = _Writer().resource(resource)
    except CannotWrite:
        raise
    except ValueError as exc:  # lxml: a character XML 1.0 cannot hold (a control character)
        raise CannotWrite(str(exc)) from None
    if pretty:
        _indent_around_narratives(root)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="utf-8"))


def _indent_around_narratives(root: Any) -> None:
    """Indent the FHIR elements; a narrative keeps its markup as it was (whitespace added inside
    it would be text of the narrative)."""
    narratives = [div for div in root.iter(_XHTML + "div") if div.getparent().tag.startswith(_FHIR)]
    holders = []
    for div in narratives:
        holder = etree.Element(_FHIR + "div")
        div.getparent().replace(div, holder)
        holders.append((holder, div))
    etree.indent(root)
    for holder, div in holders:
        div.tail = holder.tail
        holder.getparent().replace(holder, div)


def _text(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return value
    if isinstance(value, ExactDecimal):
        return str(value)
    if isinstance(value, (int, float)):
        return orjson.dumps(value).decode()  # a float read by jsonio writes its text back
    raise CannotWrite(f"a value of type {type(value).__name__} where a primitive belongs")


class _Writer:
    def __init__(self) -> None:
        self.model = r4_tables()

    def resource(self, resource: Any) -> Any:
        if not isinstance(resource, dict):
            raise CannotWrite("a resource that is not an object")
        res_type = resource.get("resourceType")
        if not isinstance(res_type, str) or res_type not in self.model.resource_types:
            raise CannotWrite(f"'{res_type}' is not an R4 resource type")
        table = self.model.tables[res_type]
        node = etree.Element(_FHIR + res_type, nsmap={None: FHIR_NS})
        self.fill(node, resource, table, skip=("resourceType",))
        return node

    def fill(self, node: Any, obj: dict[str, Any], table: Any, skip: tuple[str, ...] = ()) -> None:
        unknown = [key for key in obj if key not in skip and key.removeprefix("_") not in table.elements]
        if unknown:
            raise CannotWrite(f"{', '.join(unknown[:5])} in {table.name}: not R4 elements")
        for name, el in table.elements.items():
            value = obj.get(name)
            extra = obj.get("_" + name) if el.kind == _PRIM and el.ext_ok else None
            if value is None and extra is None:
                continue
            if el.xml_attr:
                node.set(name, _text(value))
            elif el.kind == _PRIM and el.type != "xhtml":
                self.primitives(node, name, value, extra, el.array)
            else:
                for item in value if el.array and isinstance(value, list) else [value]:
                    self.element(node, name, item, el)

    def element(self, parent: Any, name: str, value: Any, el: Any) -> None:
        if el.type == "xhtml":
            parent.append(_xhtml_element(value))
            return
        child = etree.SubElement(parent, _FHIR + name)
        if el.kind == _RESOURCE:
            child.append(self.resource(value))
        elif isinstance(value, dict):
            self.fill(child, value, el.table)
        else:
            raise CannotWrite(f"'{name}' is not an object")

    def primitives(self, parent: Any, name: str, value: Any, extra: Any, array: bool) -> None:
        if not array:
            self.primitive(parent, name, value, extra)
            return
        values = value if isinstance(value, list) else []
        extras = extra if isinstance(extra, list) else []
        for i in range(max(len(values), len(extras))):
            self.primitive(parent, name, values[i] if i < len(values) else None, extras[i] if i < len(extras) else None)

    def primitive(self, parent: Any, name: str, value: Any, extra: Any) -> None:
        if value is None and not extra:
            return
        child = etree.SubElement(parent, _FHIR + name)
        if isinstance(extra, dict) and "id" in extra:
            child.set("id", _text(extra["id"]))
        if value is not None:
            child.set("value", _text(value))
        if isinstance(extra, dict):
            self.fill(child, extra, self.model.element_table, skip=("id",))


def _xhtml_element(text: Any) -> Any:
    """A narrative string as markup. HTML's named entities (``&nbsp;``), which XML lacks, are
    read as the characters they name."""
    if not isinstance(text, str):
        raise CannotWrite("a narrative div that is not a string")
    try:
        return etree.fromstring(text, parser())
    except etree.XMLSyntaxError:
        pass

    def numeric(match: re.Match[str]) -> str:
        name = match.group(1)
        code = html.entities.name2codepoint.get(name)
        return match.group(0) if name in _XML_ENTITIES or code is None else f"&#{code};"

    try:
        return etree.fromstring(_NAMED_ENTITY.sub(numeric, text), parser())
    except etree.XMLSyntaxError as exc:
        raise CannotWrite(f"the narrative is not well-formed XHTML: {exc}") from None
