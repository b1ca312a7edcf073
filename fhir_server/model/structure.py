"""Table-driven structural checker for FHIR R4 (4.0.1) JSON resources.

fhir.resources only ships R4B models, which accept R4B-only types and elements
and are lax about JSON types, regexes and codes. This module checks a parsed
JSON resource against tables generated from the official R4
StructureDefinitions (``data/r4_structures.json.gz``) and the R4 required
value sets (``terminology/r4_valuesets.py``):

* ``resourceType`` present and an R4 type; ``contained``, ``Bundle.entry.resource``
  and every other Resource-typed element checked recursively;
* unknown elements at any depth (including ``_element`` siblings, which only
  primitives may have);
* arrays versus single values, min cardinality, at most one choice variant;
* JSON types, ranges and R4 regexes of primitives; no empty strings, objects,
  arrays or nulls (nulls only inside ``_element`` arrays aligned with values);
* Extension: ``url`` plus exactly one of ``value[x]`` or nested extensions;
* ``Narrative.div``: XHTML ``<div>`` in the XHTML namespace with only basic
  formatting elements and no scripts, event handlers or ``javascript:`` URLs;
* codes of required bindings (``code``, ``Coding``, ``CodeableConcept``);
* ele-1 on every element, a primitive's value and its ``_name`` part taken together;
* extensions whose url is an R4 core extension definition (``extensions.py``):
  the type of their value, their sub-extensions, their context, modifier or not.

Every :class:`Issue` carries a FHIRPath ``expression`` that names an element of
the resource, with indexes, as FHIRPath and the HL7 validator write it:
``Bundle.entry[2].resource.name[0].given[0]``; a choice element is
``Observation.value.ofType(Quantity)``, never ``valueQuantity``; the ``_given``
part of a primitive is the element ``given`` itself; a property the model does
not have (``foo``, ``_name`` of a complex element) is reported on the element
that holds it (``Patient``), with its name in the diagnostics.
:func:`expression_at` turns a JSON location (keys and indexes) into the same
form for the other checks (the R4B model, the JSON limits, terminology).

Tables are built once, on first use; a call does dictionary look-ups and
precompiled regex matches only.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Callable, Sequence
from datetime import date
from decimal import Decimal
from functools import cache, lru_cache
from typing import Any

from fhir_server.errors import Issue
from fhir_server.jsonio import is_negative_zero
from fhir_server.model.definitions import load_definitions
from fhir_server.model.extensions import ExtensionDef, check_core_extension, core_extensions
from terminology import r4_valuesets

MAX_ISSUES = 100

_PRIM, _COMPLEX, _RESOURCE = 0, 1, 2
_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1
_MAX_STRING = 1024 * 1024  # string.maxLength in the R4 definitions

PrimitiveCheck = Callable[[Any], "str | None"]


class _Stop(Exception):
    """Raised when the issue cap is reached."""


class _Issues:
    __slots__ = ("cap", "items")

    def __init__(self, cap: int) -> None:
        self.items: list[Issue] = []
        self.cap = cap

    def add(self, code: str, diagnostics: str, expression: str | None) -> None:
        self.items.append(Issue("error", code, diagnostics, expression))
        if len(self.items) >= self.cap:
            raise _Stop


def _jtype(value: Any) -> str:
    if value is None:
        return "null"
    if value is True or value is False:
        return "boolean"
    if isinstance(value, (int, float, Decimal)):  # Decimal: an exact number (jsonio.ExactDecimal)
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _show(value: str) -> str:
    return repr(value if len(value) <= 80 else value[:77] + "...")


# --------------------------------------------------------------------------- primitives


def _boolean(value: Any) -> str | None:
    if value is True or value is False:
        return None
    return f"Expected a JSON boolean, got {_jtype(value)}"


def _integer_check(type_name: str, low: int) -> PrimitiveCheck:
    def check(value: Any) -> str | None:
        if type(value) is not int and not is_negative_zero(value):  # -0: an integer kept as written (jsonio)
            if _jtype(value) == "number":  # 1.0 or 1e2: a number, but not written as an integer
                return f"Expected a JSON integer ({type_name}), got the number {value!s} (a fraction or exponent)"
            return f"Expected a JSON integer ({type_name}), got {_jtype(value)}"
        if value < low or value > _INT_MAX:
            return f"Value {value} is out of range for {type_name}"
        return None

    return check


def _decimal(value: Any) -> str | None:
    if type(value) is int:
        return None
    if type(value) is float:
        return None if math.isfinite(value) else f"Value {value} is not a valid decimal"
    # exact decimals (fhir_server.jsonio keeps "1.50" as a Decimal subclass)
    if isinstance(value, Decimal):
        return None if value.is_finite() else f"Value {value} is not a valid decimal"
    return f"Expected a JSON number (decimal), got {_jtype(value)}"


def _valid_calendar_date(value: str) -> bool:
    """Regexes allow 2020-02-30; this rejects days that do not exist."""
    if len(value) < 10:
        return True
    try:
        date(int(value[0:4]), int(value[5:7]), int(value[8:10]))
    except ValueError:
        return False
    return True


def _string_check(type_name: str, regex: str | None) -> PrimitiveCheck:
    # re.ASCII gives \s and \S the meaning of the Java regexes the definitions
    # were written for (non-breaking spaces are ordinary characters).
    fullmatch = re.compile(regex, re.ASCII).fullmatch if regex else None
    calendar = type_name in ("date", "dateTime", "instant")
    max_len = _MAX_STRING if type_name in ("string", "markdown") else None

    def check(value: Any) -> str | None:
        if type(value) is not str:
            return f"Expected a JSON string ({type_name}), got {_jtype(value)}"
        if not value:
            return f"Empty string is not allowed ({type_name})"
        if max_len is not None and len(value) > max_len:
            return f"String is longer than {max_len} characters"
        if fullmatch is not None and fullmatch(value) is None:
            return f"Invalid {type_name} value {_show(value)}"
        if calendar and not _valid_calendar_date(value):
            return f"Invalid {type_name} value {_show(value)}: no such calendar date"
        return None

    return check


_B64 = re.compile(r"[A-Za-z0-9+/]*={0,2}", re.ASCII).fullmatch
_WS = re.compile(r"\s+", re.ASCII)


def _base64(value: Any) -> str | None:
    # Not the definition's regex: its nested, whitespace-ambiguous repeat
    # backtracks badly on large attachments. Same language, checked linearly.
    if type(value) is not str:
        return f"Expected a JSON string (base64Binary), got {_jtype(value)}"
    if not value:
        return "Empty string is not allowed (base64Binary)"
    compact = _WS.sub("", value) if _WS.search(value) else value
    if len(compact) % 4 or _B64(compact) is None:
        return "Invalid base64Binary value"
    return None


# Elements allowed in narrative (txt-1: basic HTML formatting, as enforced by
# the HL7 validator). Anything else, including script, style, iframe, object,
# embed, form and input, is rejected.
_XHTML_ELEMENTS = frozenset(
    [
        "p",
        "br",
        "div",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "a",
        "span",
        "b",
        "em",
        "i",
        "strong",
        "small",
        "big",
        "tt",
        "dfn",
        "q",
        "var",
        "abbr",
        "acronym",
        "cite",
        "blockquote",
        "hr",
        "address",
        "bdo",
        "kbd",
        "samp",
        "sub",
        "sup",
        "ul",
        "ol",
        "li",
        "dl",
        "dt",
        "dd",
        "pre",
        "table",
        "caption",
        "colgroup",
        "col",
        "thead",
        "tr",
        "tfoot",
        "tbody",
        "th",
        "td",
        "code",
        "img",
        "map",
        "area",
        "s",
        "u",
        "strike",
        "del",
        "ins",
        "center",
        "font",
    ]
)
_XHTML_TAG = re.compile(r"<\s*/?\s*([A-Za-z][A-Za-z0-9:_.-]*)")
_XHTML_OPEN_DIV = re.compile(r"\s*<div(\s[^<>]*)?/?>", re.ASCII)
_XHTML_NAMESPACE = re.compile(r"""\sxmlns\s*=\s*(["'])http://www\.w3\.org/1999/xhtml\1""")
_XHTML_ACTIVE = re.compile(
    r"""<[^<>]*?[\s/"']on[a-z]+\s*=|(?:java|vb)script\s*:|data\s*:\s*text/html|<!DOCTYPE|<!ENTITY|<\?|<!\[CDATA\[""",
    re.IGNORECASE,
)
_XHTML_TEXT = re.compile(r"<[^>]*>|&[A-Za-z0-9#]+;|\s+")


def _xhtml(value: Any) -> str | None:
    if type(value) is not str:
        return f"Expected a JSON string (xhtml), got {_jtype(value)}"
    opening = _XHTML_OPEN_DIV.match(value)
    if opening is None:
        return "Narrative must be an XHTML <div> element"
    if _XHTML_NAMESPACE.search(opening.group(0)) is None:
        return 'Narrative <div> must declare xmlns="http://www.w3.org/1999/xhtml"'
    if not opening.group(0).endswith("/>") and not value.rstrip().endswith("</div>"):
        return "Narrative must be a single XHTML <div> element ending with </div>"
    return None


def _xhtml_rules(value: str) -> str | None:
    """txt-1 / txt-2: only basic formatting, no active content, some content."""
    active = _XHTML_ACTIVE.search(value)
    if active is None and "&" in value:  # entity-encoded tricks such as &#106;avascript:
        active = _XHTML_ACTIVE.search(html.unescape(value))
    if active is not None:
        return f"Narrative contains active or unsafe content: {_show(active.group(0).strip())}"
    for match in _XHTML_TAG.finditer(value):
        if match.group(1).lower() not in _XHTML_ELEMENTS:
            return f"Narrative contains the element <{match.group(1)}>, which is not allowed in FHIR narrative"
    if not _XHTML_TEXT.sub("", value) and "<img" not in value:
        return "Narrative must have some non-whitespace content"
    return None


def _primitive_checks(regexes: dict[str, str | None]) -> dict[str, PrimitiveCheck]:
    checks: dict[str, PrimitiveCheck] = {
        "boolean": _boolean,
        "integer": _integer_check("integer", _INT_MIN),
        "unsignedInt": _integer_check("unsignedInt", 0),
        "positiveInt": _integer_check("positiveInt", 1),
        "decimal": _decimal,
        "base64Binary": _base64,
        "xhtml": _xhtml,
    }
    for name, regex in regexes.items():
        if name not in checks:
            checks[name] = _string_check(name, regex)
    return checks


# --------------------------------------------------------------------------- tables


_SIMPLE_QUANTITY = "http://hl7.org/fhir/StructureDefinition/SimpleQuantity"
#: FHIRPath keywords that are no identifier unless delimited (fhirpath.html grammar:
#: ``as``, ``contains``, ``in`` and ``is`` are allowed as identifiers)
_FHIRPATH_KEYWORDS = frozenset({"and", "or", "xor", "implies", "div", "mod", "true", "false"})


class _Binding:
    """A required binding, prepared for membership tests."""

    __slots__ = ("codes", "label", "pairs", "syntax", "systems")

    def __init__(self, url: str) -> None:
        vs = r4_valuesets.get(url)
        self.label = url
        self.codes = vs.codes if vs is not None and vs.enumerable else None
        self.pairs = vs.pairs if vs is not None and vs.enumerable else None
        self.systems = frozenset(vs.systems) if vs is not None else frozenset()
        self.syntax = vs.syntax.fullmatch if vs is not None and vs.syntax is not None else None


class _Element:
    __slots__ = (
        "array",
        "binding",
        "check",
        "choice",
        "ctx",
        "ext_ok",
        "is_extension",
        "kind",
        "max",
        "name",
        "path",
        "plain",
        "simple_quantity",
        "stem",
        "step",
        "table",
        "type",
        "xml_attr",
    )

    def __init__(self, name: str, stem: str, type_code: str, record: dict[str, Any]) -> None:
        self.name = name
        self.stem = stem
        self.type = type_code
        #: the element's path in its definition (``Patient.deceased[x]``, ``HumanName.family``)
        self.path: str = record["path"]
        self.is_extension = type_code == "Extension"
        #: the names an extension context may give this element (set by _Model)
        self.ctx: frozenset[str] = frozenset()
        self.kind = _COMPLEX
        self.array = record["max"] != "1"
        self.max = None if record["max"] == "*" else int(record["max"])
        self.table: _Table | None = None
        self.check: PrimitiveCheck | None = None
        self.binding: _Binding | None = None
        # Element.id, Extension.url and xhtml are XML attributes/markup in R4:
        # they cannot carry a JSON ``_name`` sibling.
        self.xml_attr = bool(record.get("xmlAttr"))
        self.ext_ok = not self.xml_attr and type_code != "xhtml"
        self.choice = bool(record.get("choice"))
        #: this element's step in a FHIRPath expression: ``value.ofType(boolean)`` for ``valueBoolean``
        self.step = choice_step(stem, type_code) if self.choice else name
        if name in _FHIRPATH_KEYWORDS:  # Narrative.div: FHIRPath writes it `div` (as R4's dom-6 does)
            self.step = f"`{name}`"
        self.plain = False
        self.simple_quantity = type_code == "Quantity" and _SIMPLE_QUANTITY in record.get("profiles", ())


class _Table:
    __slots__ = ("ctx", "elements", "is_extension", "is_resource", "name", "required")

    def __init__(self, name: str, is_resource: bool) -> None:
        self.name = name
        self.elements: dict[str, _Element] = {}
        #: (name in the diagnostics, FHIRPath step, JSON names that satisfy it)
        self.required: list[tuple[str, str, tuple[str, ...]]] = []
        self.is_resource = is_resource
        self.is_extension = name == "Extension"
        #: for a resource type: the names an extension context may give it (set by _Model)
        self.ctx: frozenset[str] = frozenset()


def choice_step(stem: str, type_code: str) -> str:
    """The FHIRPath of one type of a choice element: ``value.ofType(Quantity)``."""
    return f"{stem}.ofType({type_code})"


class _Model:
    def __init__(self) -> None:
        defs = load_definitions()
        self.resource_types = frozenset(defs["resourceTypes"])
        prim_checks = _primitive_checks(defs["primitives"])
        tables: dict[str, _Table] = {}
        pending: list[tuple[_Element, str, dict[str, Any]]] = []
        for type_name, spec in defs["types"].items():
            is_resource = spec["kind"] == "resource"
            tables[type_name] = _Table(type_name, is_resource)
            for record in spec["elements"]:
                parent, _, last = record["path"].rpartition(".")
                table = tables.get(parent)
                if table is None:
                    table = tables[parent] = _Table(parent, False)
                stem = last[:-3] if last.endswith("[x]") else last
                keys: list[str] = []
                for name, type_code in record["names"].items():
                    el = _Element(name, stem, type_code, record)
                    table.elements[name] = el
                    keys.append(name)
                    if type_code in prim_checks:
                        el.kind = _PRIM
                        el.check = prim_checks[type_code]
                        if el.ext_ok:
                            keys.append("_" + name)
                    elif type_code == "Resource":
                        el.kind = _RESOURCE
                    else:
                        pending.append((el, record["path"], record))
                    if "binding" in record and type_code in ("code", "Coding", "CodeableConcept"):
                        el.binding = _binding(record["binding"])
                    # a primitive whose only check is its type/regex: the hot path
                    el.plain = el.kind == _PRIM and el.binding is None and type_code != "xhtml"
                if record["min"] > 0:
                    # a choice is named by its stem (``medication``); ``div`` needs its backticks
                    step = stem if record.get("choice") else table.elements[last].step
                    table.required.append((last, step, tuple(keys)))
        for el, path, record in pending:
            ref = record.get("contentReference")
            if ref:
                el.table = tables[ref.lstrip("#")]
            elif el.type in ("BackboneElement", "Element") and path in tables:
                el.table = tables[path]
            else:
                el.table = tables[el.type]
        self.tables = tables
        self.element_table = tables["Element"]
        self.extensions = core_extensions()
        self._contexts(tables)

    def _contexts(self, tables: dict[str, _Table]) -> None:
        """What an extension context may call each element (see ExtensionDef.contexts).

        As the HL7 validator matches them: the element's path in its definition, the
        definition it reuses (``Questionnaire.item`` for nested items), its type and that
        type's ancestors (a ``code`` is a ``string``); a resource by its type and ancestors.
        """
        ext = self.extensions
        shared: dict[frozenset[str], frozenset[str]] = {}
        for table in tables.values():
            if table.is_resource:
                table.ctx = frozenset(ext.ancestors(table.name))
            for el in table.elements.values():
                names = {el.path, *ext.ancestors(el.type)}
                if el.table is not None:
                    names.add(el.table.name)
                key = frozenset(names)
                el.ctx = shared.setdefault(key, key)


@cache
def _binding(url: str) -> _Binding:
    return _Binding(url)


@lru_cache(maxsize=1)
def _model() -> _Model:
    return _Model()


def r4_tables() -> _Model:
    """The R4 tables (types, their elements in definition order): also what FHIR XML is read and
    written by (``xml_format``)."""
    return _model()


def warm_up() -> None:
    """Build the tables now (about 60 ms) instead of on the first check."""
    _model()


# --------------------------------------------------------------------------- walking


def check_structure(resource: Any, max_issues: int = MAX_ISSUES, *, extension_urls: set[str] | None = None) -> list[Issue]:
    """Check a parsed JSON resource against the R4 definitions.

    Returns every problem found (up to ``max_issues``) as error Issues; an
    empty list means the resource is structurally valid R4. ``extension_urls``: gets the url of
    every extension in an ``extension`` array of the resource, at any depth (contained resources
    and ``_name`` objects too), all of them when no issue is returned (the walk may stop early
    otherwise): a check that looks for an extension then needs no walk of its own.
    """
    issues = _Issues(max_issues)
    try:
        _Walker(_model(), issues, extension_urls).resource(resource, None)
    except _Stop:
        pass
    except RecursionError:
        issues.items.append(Issue("error", "structure", "Resource is nested too deeply to be checked", None))
    return issues.items


def expression_at(resource: Any, loc: Sequence[str | int]) -> str | None:
    """The FHIRPath expression of the element at the JSON location ``loc`` of ``resource``.

    ``loc`` is a path of JSON keys and array indexes from the resource's root, as
    pydantic and a JSON walk give it: ``("name", 0, "_given", 1)`` is
    ``Patient.name[0].given[1]``, ``("extension", 0, "valueCode")`` is
    ``Patient.extension[0].value.ofType(code)``. A location that leaves the R4 model
    (an unknown key, a wrong JSON shape) ends at the last element it reaches; None when
    ``resource`` is not a resource of a known type.
    """
    model = _model()
    rtype = resource.get("resourceType") if type(resource) is dict else None
    if type(rtype) is not str or rtype not in model.resource_types:
        return None
    table: _Table | None = model.tables[rtype]
    path = rtype
    node: Any = resource
    parts = list(loc)
    i = 0
    while i < len(parts) and table is not None and type(node) is dict:
        key = parts[i]
        if type(key) is not str:
            break
        el = table.elements.get(key)
        twin = False
        if el is None and key[:1] == "_":
            el = table.elements.get(key[1:])
            twin = el is not None and el.kind == _PRIM and el.ext_ok
            if not twin:
                break
        if el is None:
            break
        path += "." + el.step
        node = node.get(key)
        i += 1
        if el.array:
            index = parts[i] if i < len(parts) else None
            if type(index) is not int or type(node) is not list or not 0 <= index < len(node):
                break
            path += f"[{index}]"
            node = node[index]
            i += 1
        if twin:
            table = model.element_table
        elif el.kind == _RESOURCE:
            inner = node.get("resourceType") if type(node) is dict else None
            table = model.tables[inner] if type(inner) is str and inner in model.resource_types else None
        else:
            table = el.table
    return path


class _Walker:
    __slots__ = ("core", "model", "out", "urls")

    def __init__(self, model: _Model, out: _Issues, urls: set[str] | None = None) -> None:
        self.model = model
        self.out = out
        self.core = model.extensions.by_url
        self.urls = urls

    def resource(self, obj: Any, path: str | None, contained: bool = False) -> None:
        """Check a resource; ``path`` is where it sits (None at the top level)."""
        out = self.out
        if type(obj) is not dict:
            out.add("structure", f"Expected a JSON object for a resource, got {_jtype(obj)}", path)
            return
        rtype = obj.get("resourceType")
        if rtype is None:
            out.add("required", "Missing resourceType", path)
            return
        if type(rtype) is not str or rtype not in self.model.resource_types:
            shown = _show(rtype) if type(rtype) is str else _jtype(rtype)
            out.add("structure", f"Unknown resource type {shown}: not a FHIR R4 (4.0.1) resource type", path)
            return
        here = path or rtype
        if contained and "contained" in obj:
            out.add("invariant", "A contained resource must not contain other resources (dom-2)", f"{here}.contained")
        table = self.model.tables[rtype]
        self.object(obj, table, here, table.ctx)

    def object(self, obj: dict[str, Any], table: _Table, path: str, ctx: frozenset[str]) -> None:
        """Check the properties of one JSON object; ``ctx``: what extension contexts call it."""
        out = self.out
        elements = table.elements
        choices: dict[str, str] | None = None
        for key, value in obj.items():
            el = elements.get(key)
            if el is None:
                if key[:1] == "_":
                    el = elements.get(key[1:])
                    if el is not None and el.kind == _PRIM and el.ext_ok:
                        if el.choice:
                            choices = self._choice(choices, el, path)
                        self.primitive_extension(obj, el, value, path)
                        continue
                    if el is not None:
                        out.add(
                            "structure",
                            f"Element '{key}' is not allowed: only primitive elements have a '_' sibling",
                            path,
                        )
                        continue
                elif key == "resourceType" and table.is_resource:
                    continue
                out.add("structure", f"Unknown element '{key}'", path)
                continue
            if el.choice:
                choices = self._choice(choices, el, path)
            if el.array:
                if type(value) is not list:
                    out.add("structure", f"Element '{key}' must be a JSON array, got {_jtype(value)}", f"{path}.{el.step}")
                    continue
                if not value:
                    out.add("structure", f"Empty array is not allowed for '{key}'", f"{path}.{el.step}")
                    continue
                if el.max is not None and len(value) > el.max:
                    out.add("structure", f"Element '{key}' allows at most {el.max} items, got {len(value)}", f"{path}.{el.step}")
                if el.kind == _PRIM:
                    siblings = obj.get("_" + key)
                    for i, item in enumerate(value):
                        if item is None:
                            if type(siblings) is list and i < len(siblings) and siblings[i] is not None:
                                continue
                            out.add(
                                "structure",
                                f"null is only allowed where '_{key}' has an extension at the same index",
                                f"{path}.{el.step}[{i}]",
                            )
                        elif el.plain:
                            if el.check(item) is not None:  # type: ignore[misc]
                                self.primitive(item, el, path, i)
                        else:
                            self.primitive(item, el, path, i)
                else:
                    for i, item in enumerate(value):
                        self.complex(item, el, f"{path}.{el.step}[{i}]")
                    if el.is_extension:
                        self.core_extensions(value, key, path, ctx)
            else:
                if type(value) is list:
                    out.add("structure", f"Element '{key}' must be a single value, not an array", f"{path}.{el.step}")
                elif el.kind == _PRIM:
                    if value is None:
                        out.add("structure", "null is not allowed", f"{path}.{el.step}")
                    elif el.plain:
                        if el.check(value) is not None:  # type: ignore[misc]
                            self.primitive(value, el, path, None)
                    else:
                        self.primitive(value, el, path, None)
                else:
                    self.complex(value, el, f"{path}.{el.step}")
        for name, step, keys in table.required:
            for k in keys:
                if k in obj:
                    break
            else:
                out.add("required", f"Missing required element '{name}'", f"{path}.{step}")
        if table.is_extension:
            self.extension_rule(obj, path)

    def _choice(self, choices: dict[str, str] | None, el: _Element, path: str) -> dict[str, str]:
        if choices is None:
            choices = {}
        seen = choices.get(el.stem)
        if seen is None:
            choices[el.stem] = el.name
        elif seen != el.name:
            self.out.add(
                "structure",
                f"Only one {el.stem}[x] is allowed, found '{seen}' and '{el.name}'",
                f"{path}.{el.step}",
            )
        return choices

    def primitive(self, value: Any, el: _Element, path: str, index: int | None) -> None:
        where = f"{path}.{el.step}" if index is None else f"{path}.{el.step}[{index}]"
        problem = el.check(value)  # type: ignore[misc]
        if problem is None:
            if el.binding is not None:
                self.code_binding(value, el.binding, where)
            elif el.type == "xhtml":
                problem = _xhtml_rules(value)
                if problem is not None:
                    self.out.add("invariant", problem, where)
            return
        self.out.add("value", problem, where)

    def code_binding(self, code: str, binding: _Binding, where: str) -> None:
        if binding.codes is not None:
            if code in binding.codes:
                return
            problem = f"Code {_show(code)} is not in the required value set {binding.label}"
        elif binding.syntax is not None:
            if binding.syntax(code) is not None:
                return
            problem = f"Code {_show(code)} is not a valid code for the value set {binding.label}"
        else:
            return
        self.out.add("code-invalid", problem, where)

    def primitive_extension(self, obj: dict[str, Any], el: _Element, value: Any, path: str) -> None:
        """``_name``: the id and extensions of a primitive (an array aligned with the values).

        In FHIRPath the two JSON properties are one element, ``name``. ele-1 holds for that
        element as a whole: an ``_name`` entry with only an ``id`` is fine next to a value.
        """
        out = self.out
        where = f"{path}.{el.step}"
        element_table = self.model.element_table
        values = obj.get(el.name)
        if el.array:
            if type(value) is not list:
                out.add("structure", f"Element '_{el.name}' must be a JSON array, got {_jtype(value)}", where)
                return
            if values is not None and type(values) is list and len(values) != len(value):
                out.add("structure", f"Array '_{el.name}' must have the same length as '{el.name}'", where)
            if not value:
                out.add("structure", f"Empty array is not allowed for '_{el.name}'", where)
            for i, item in enumerate(value):
                has_value = type(values) is list and i < len(values) and values[i] is not None
                if item is None:
                    # both null: already reported with the value array, once is enough
                    if not has_value and not (type(values) is list and i < len(values)):
                        out.add("structure", "null is only allowed where the value array has a value", f"{where}[{i}]")
                    continue
                self.element(item, element_table, f"{where}[{i}]", el.ctx, has_value)
        else:
            if type(value) is list:
                out.add("structure", f"Element '_{el.name}' must be a single value, not an array", where)
                return
            self.element(value, element_table, where, el.ctx, values is not None)

    def element(self, value: Any, table: _Table, where: str, ctx: frozenset[str], has_value: bool = False) -> None:
        """An element's JSON object; ``has_value``: the primitive value of an ``_name`` object."""
        if type(value) is not dict:
            self.out.add("structure", f"Expected a JSON object, got {_jtype(value)}", where)
        elif not value:
            self.out.add("structure", "Empty object is not allowed", where)
        elif len(value) == 1 and "id" in value and not has_value and not table.is_resource:
            self.out.add("structure", "An element must have a value or children besides 'id' (ele-1)", where)
            self.object(value, table, where, ctx)
        else:
            self.object(value, table, where, ctx)

    def complex(self, value: Any, el: _Element, where: str) -> None:
        if el.kind == _RESOURCE:
            self.resource(value, where, contained=el.name == "contained")
            return
        self.element(value, el.table, where, el.ctx)  # type: ignore[arg-type]
        if el.simple_quantity and type(value) is dict and "comparator" in value:
            self.out.add("invariant", "A SimpleQuantity must not have a comparator (sqty-1)", f"{where}.comparator")
        if el.binding is not None and type(value) is dict:
            if el.type == "Coding":
                self.coding_binding(value, el.binding, where)
            else:
                self.concept_binding(value, el.binding, where)

    def core_extensions(self, items: list[Any], key: str, path: str, ctx: frozenset[str]) -> None:
        """Extensions of one element whose url is an R4 core definition (extensions.py).

        Checked here, where the element holding them is known: their context and whether
        they belong in ``modifierExtension``; then their own value or sub-extensions.
        """
        core = self.core
        urls = self.urls if key == "extension" else None
        for i, ext in enumerate(items):
            if type(ext) is not dict:
                continue
            url = ext.get("url")
            if urls is not None and type(url) is str:
                urls.add(url)
            definition = core.get(url) if type(url) is str else None
            if definition is not None:
                self.core_extension(ext, definition, key, f"{path}.{key}[{i}]", ctx)

    def core_extension(self, ext: dict[str, Any], definition: ExtensionDef, key: str, where: str, ctx: frozenset[str]) -> None:
        out = self.out
        url = definition.url
        if not definition.anywhere and ctx.isdisjoint(definition.contexts):
            allowed = ", ".join(sorted(definition.contexts))
            out.add("structure", f"The extension '{url}' is not allowed here: its definition allows it on {allowed}", where)
        if definition.modifier and key != "modifierExtension":
            out.add("structure", f"The extension '{url}' is a modifier extension: it belongs in modifierExtension", where)
        elif not definition.modifier and key == "modifierExtension":
            out.add("structure", f"The extension '{url}' is not a modifier extension: it belongs in extension", where)
        check_core_extension(ext, definition, where, out.add)

    def coding_binding(self, coding: dict[str, Any], binding: _Binding, where: str) -> None:
        ok = _coding_in(coding, binding)
        if ok is False:
            self.out.add(
                "code-invalid",
                f"Code {_show(coding['code'])} (system {coding.get('system')}) is not in the required value set {binding.label}",
                where,
            )

    def concept_binding(self, concept: dict[str, Any], binding: _Binding, where: str) -> None:
        """Required binding on a CodeableConcept: some coding must be in the value set.

        Codings from the value set's own systems must be valid; codings from
        other systems are accepted as translations as long as one coding is in
        the set. A concept with text only is accepted.
        """
        codings = concept.get("coding")
        if type(codings) is not list:
            return
        results = [(i, c, _coding_in(c, binding)) for i, c in enumerate(codings) if type(c) is dict]
        if any(ok for _, _, ok in results) or all(ok is None for _, _, ok in results):
            return
        reported = False
        for i, coding, ok in results:
            if ok is False and coding.get("system") in binding.systems:
                self.out.add(
                    "code-invalid",
                    f"Code {_show(coding['code'])} is not in the required value set {binding.label}",
                    f"{where}.coding[{i}]",
                )
                reported = True
        if not reported:
            self.out.add("code-invalid", f"No coding is from the required value set {binding.label}", where)

    def extension_rule(self, ext: dict[str, Any], path: str) -> None:
        has_value = False
        for k in ext:
            if k[:5] == "value" or k[:6] == "_value":
                has_value = True
                break
        has_nested = "extension" in ext
        if has_value and has_nested:
            self.out.add("invariant", "An extension must have either a value[x] or nested extensions, not both (ext-1)", path)
        elif not has_value and not has_nested:
            self.out.add("invariant", "An extension must have a value[x] or nested extensions (ext-1)", path)


def _coding_in(coding: dict[str, Any], binding: _Binding) -> bool | None:
    """Membership of one Coding; None when it has no code or the set is not enumerable."""
    code = coding.get("code")
    if type(code) is not str:
        return None
    if binding.pairs is None:
        if binding.syntax is None:
            return None
        return binding.syntax(code) is not None
    system = coding.get("system")
    if type(system) is str:
        return (system, code) in binding.pairs
    return code in binding.codes  # type: ignore[operator]
