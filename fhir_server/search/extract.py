"""Index-value extraction: resource dict -> typed index rows.

Two ways to get a parameter's values, both yielding ``(fhir_type, data)``
pairs that one set of converters turns into rows:

* a plain-Python walker for simple dotted paths (``Patient.name.family``),
  optionally followed by ``.where(resolve() is T)`` or ``.where(system='x')``.
  Element types come from fhirpathpy's R4 model. This covers the hot
  parameters (identifier, name, birthdate, subject/patient, period, ...) and
  most others, at a few µs each;
* fhirpathpy for everything else (choice casts, unions, functions), compiled
  once per (type, param) with the R4 model and a ``resolve()`` that returns a
  typed stub from the reference string.

``tests/search/test_extract.py`` checks both give identical rows.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from decimal import Decimal
from functools import cache, lru_cache
from importlib import resources as ilr
from typing import Any

from fhirpathpy import compile as fp_compile
from fhirpathpy.engine.nodes import ResourceNode

from ..model.references import reference_holders
from ..mpi.blocking import stored_keys
from ..mpi.features import extract as mpi_features
from ..storage.index_tables import OTHER_REFERENCE
from ..storage.search_index import IndexRows

# the R4 model tables, shared with the walkers (backbone elements have no path2Type entry, only children)
from .fhirpath_walker import _BACKBONE, _CHOICE, _ELSEWHERE, _PATH2TYPE, R4, Fallback, Values, compile_walker
from .near import position_rows
from .parameters import SearchParam, params_for
from .phonetic import phonetic_rows
from .values import (
    MAX_US,
    MIN_US,
    cut,
    date_range,
    normalize_string,
    parse_decimal,
    parse_reference,
    precision_range,
    reference_type,
)

ADMIN_CODE_URL = "https://fhir.kemkes.go.id/r4/StructureDefinition/administrativeCode"


# --------------------------------------------------------------------------- FHIRPath (general path)


def _resolve(inputs: list) -> list:
    out = []
    for node in inputs:
        data = node.data if isinstance(node, ResourceNode) else node
        if isinstance(data, dict):
            t = reference_type(data.get("reference"))
            if t:
                out.append(ResourceNode.create_node({"resourceType": t, "id": "x"}, t))
    return out


_OPTIONS = {
    "returnRawData": True,
    "userInvocationTable": {"resolve": {"fn": _resolve, "arity": {0: []}}},
}


@cache
def _compiled(expression: str) -> Callable:
    return fp_compile(expression, R4, _OPTIONS)


def fhirpath_values(resource: dict, expression: str) -> Values:
    """Evaluate ``expression`` and return ``(fhir_type, data)`` pairs."""
    out: Values = []
    for node in _compiled(expression)(resource, {}):
        if isinstance(node, ResourceNode):
            if node.data is None:
                continue
            t = node.path or ""
            out.append((t[7:].lower() if t.startswith("System.") else t, node.data))
        elif isinstance(node, bool):
            out.append(("boolean", node))
        elif node is not None:
            out.append(("string" if isinstance(node, str) else type(node).__name__, node))
    return out


# --------------------------------------------------------------------------- plain-Python walker

_SIMPLE = re.compile(
    r"^([A-Z][A-Za-z]+)((?:\.[a-z][A-Za-z]*)+)"
    r"(?:\.where\((?:resolve\(\) is ([A-Z][A-Za-z]+)|system='([a-z]+)')\))?$"
)


def _type_steps(res_type: str, elems: list[str], paths: list[str] | None = None) -> list[str] | None:
    """FHIR type of each step of a dotted path, or None if the walker cannot follow it.

    ``paths`` (if given) receives each step's defining element path (``Address.use``).
    """
    key, types = res_type, []
    for e in elems:
        path = f"{key}.{e}"
        path = _ELSEWHERE.get(path, path)
        if path in _CHOICE:
            return None
        t = _PATH2TYPE.get(path) or ("BackboneElement" if path in _BACKBONE else None)
        if t is None:
            return None
        types.append(t)
        if paths is not None:
            paths.append(path)
        key = path if t in ("BackboneElement", "Element") else t
    return types


@lru_cache(maxsize=1)
def _code_systems() -> dict[str, str]:
    return json.loads(ilr.files("fhir_server.search").joinpath("data/code_systems.json").read_text())


@cache
def implicit_system(res_type: str, code: str) -> str | None:
    """The code system of a token parameter on a bound ``code`` element (``gender``), if any."""
    p = params_for(res_type).get(code)
    if p is None or p.type != "token" or not p.expression:
        return None
    m = _SIMPLE.match(p.expression)
    if not m or m.group(3) or m.group(4):
        return None
    paths: list[str] = []
    types = _type_steps(res_type, m.group(2)[1:].split("."), paths)
    if not types or types[-1] != "code":
        return None
    return _code_systems().get(paths[-1])


_CAST = re.compile(r"^\(([A-Z][A-Za-z]+)((?:\.[a-z][A-Za-z]*)+) as ([A-Za-z]+)\)$")
_EXT = re.compile(r"^([A-Z][A-Za-z]+)\.extension\('([^']+)'\)$")


def _walker(expression: str) -> Callable[[dict], Values] | None:
    m = _SIMPLE.match(expression)
    cast = _CAST.match(expression) if not m else None
    ext = _EXT.match(expression) if not (m or cast) else None
    if ext:
        return _extension_walker(*ext.groups())
    if cast:
        res_type, dotted, as_type = cast.groups()
        elems = dotted[1:].split(".")
        *head, last = elems
        choice_path = ".".join([res_type, *head, last])
        if choice_path not in _CHOICE or _type_steps(res_type, head) is None:
            return None
        elems = [*head, last + as_type[0].upper() + as_type[1:]]
        leaf_name = as_type
        resolve_is = system_is = None
    elif m:
        res_type, dotted, resolve_is, system_is = m.groups()
        elems = dotted[1:].split(".")
        types = _type_steps(res_type, elems)
        if types is None or types[-1] in ("Resource", "Extension"):
            return None
        leaf = types[-1]
        leaf_name = leaf[7:].lower() if leaf.startswith("System.") else leaf
    else:
        return None

    def walk(resource: dict) -> Values:
        if resource.get("resourceType") != res_type:
            return []
        cur: list = [resource]
        for e in elems:
            nxt: list = []
            for c in cur:
                v = c.get(e) if isinstance(c, dict) else None
                if v is None:
                    continue
                if isinstance(v, list):
                    nxt.extend(x for x in v if x is not None)
                else:
                    nxt.append(v)
            cur = nxt
            if not cur:
                return []
        if resolve_is:
            cur = [c for c in cur if isinstance(c, dict) and reference_type(c.get("reference")) == resolve_is]
        elif system_is:
            cur = [c for c in cur if isinstance(c, dict) and c.get("system") == system_is]
        return [(leaf_name, c) for c in cur]

    return walk


def _extension_walker(res_type: str, url: str) -> Callable[[dict], Values]:
    def walk(resource: dict) -> Values:
        if resource.get("resourceType") != res_type:
            return []
        return [("Extension", e) for e in resource.get("extension") or [] if isinstance(e, dict) and e.get("url") == url]

    return walk


def leaf_type(res_type: str, expression: str | None) -> str | None:
    """FHIR type of the values of a plain path / cast expression, else None."""
    m = _SIMPLE.match(expression or "")
    if m and m.group(1) == res_type and not (m.group(3) or m.group(4)):
        types = _type_steps(res_type, m.group(2)[1:].split("."))
        return types[-1] if types else None
    c = _CAST.match(expression or "")
    if c and c.group(1) == res_type:
        return c.group(3)[0].lower() + c.group(3)[1:]
    return None


@cache
def getter(res_type: str, code: str) -> tuple[str, Callable[[dict], Values]] | None:
    """``("fast" | "fhirpath", fn)`` for a parameter, or None if it has no expression."""
    p = params_for(res_type).get(code)
    if p is None or not p.expression:
        return None
    if code.startswith("_"):
        meta = {
            "_tag": ("tag", "Coding"),
            "_security": ("security", "Coding"),
            "_profile": ("profile", "canonical"),
            "_source": ("source", "uri"),
        }.get(code)
        if meta:
            key, ftype = meta

            def meta_values(resource: dict, key: str = key, ftype: str = ftype) -> Values:
                v = (resource.get("meta") or {}).get(key)
                if v is None:
                    return []
                return [(ftype, x) for x in (v if isinstance(v, list) else [v]) if x is not None]

            return "fast", meta_values
    if code == "address-administrative-code":
        return "fast", _admin_codes
    if res_type == "Patient" and code == "deceased":
        return "fast", _patient_deceased
    fast = _walker(p.expression)
    if fast is not None:
        return "fast", fast
    expr = p.expression
    walker = compile_walker(res_type, expr)
    if walker is not None:
        return "fast", _or_fhirpath(walker, expr)
    return "fhirpath", lambda resource: fhirpath_values(resource, expr)


def _or_fhirpath(walker: Callable[[dict], Values], expression: str) -> Callable[[dict], Values]:
    """``walker``, handing the resources it cannot match exactly to fhirpathpy."""

    def values(resource: dict) -> Values:
        try:
            return walker(resource)
        except Fallback:
            return fhirpath_values(resource, expression)

    return values


def _patient_deceased(resource: dict) -> Values:
    """``Patient.deceased.exists() and Patient.deceased != false``."""
    if "deceasedDateTime" in resource:
        return [("boolean", True)]
    return [("boolean", resource.get("deceasedBoolean") is True)]


def _admin_codes(resource: dict) -> Values:
    """SATUSEHAT Address.extension(administrativeCode).extension(province|city|district|village)."""
    out: Values = []
    addresses = resource.get("address") or []
    for addr in addresses if isinstance(addresses, list) else [addresses]:
        if not isinstance(addr, dict):
            continue
        for ext in addr.get("extension") or []:
            if ext.get("url") != ADMIN_CODE_URL:
                continue
            for sub in ext.get("extension") or []:
                code = sub.get("valueCode") or sub.get("valueString")
                if code:
                    out.append(("Coding", {"system": sub.get("url"), "code": code}))
    return out


# --------------------------------------------------------------------------- converters


def _text(*parts: Any) -> str | None:
    joined = " ".join(p for p in parts if isinstance(p, str) and p)
    return normalize_string(joined) if joined else None


def _token_rows(code: str, values: Values, p: SearchParam, res_type: str | None = None) -> list[dict]:
    rows: list[dict] = []
    implicit = implicit_system(res_type, p.code) if res_type else None
    for t, v in values:
        if isinstance(v, dict):
            if t == "CodeableConcept" or "coding" in v:
                codings = [c for c in v.get("coding") or [] if isinstance(c, dict)]
                for c in codings:
                    rows.append(
                        {
                            "param": code,
                            "system": cut(c.get("system")),
                            "code": cut(c.get("code")),
                            "text": _text(v.get("text"), c.get("display")),
                        }
                    )
                if not codings and v.get("text"):
                    rows.append({"param": code, "system": None, "code": None, "text": _text(v.get("text"))})
            elif t == "Identifier":
                typ = v.get("type") or {}
                rows.append(
                    {
                        "param": code,
                        "system": cut(v.get("system")),
                        "code": cut(v.get("value")),
                        "text": _text(typ.get("text"), *[c.get("display") for c in typ.get("coding") or []]),
                    }
                )
                if p.of_type and v.get("value"):
                    for c in typ.get("coding") or []:
                        rows.append(
                            {
                                "param": code + ":of-type",
                                "system": cut(f"{c.get('system') or ''}|{c.get('code') or ''}"),
                                "code": cut(v.get("value")),
                                "text": None,
                            }
                        )
            elif t == "ContactPoint":
                rows.append({"param": code, "system": cut(v.get("system")), "code": cut(v.get("value")), "text": None})
            elif t in ("Coding",) or "code" in v:
                rows.append({"param": code, "system": cut(v.get("system")), "code": cut(v.get("code")), "text": _text(v.get("display"))})
        elif isinstance(v, bool):
            rows.append({"param": code, "system": None, "code": "true" if v else "false", "text": None})
        elif isinstance(v, str):
            rows.append({"param": code, "system": implicit if t == "code" else None, "code": cut(v), "text": None})
    return rows


_NAME_PARTS = ("family", "given", "prefix", "suffix", "text")
_ADDRESS_PARTS = ("line", "city", "district", "state", "postalCode", "country", "text")


def _string_rows(code: str, values: Values) -> list[dict]:
    strings: list[str] = []
    for t, v in values:
        if isinstance(v, str):
            strings.append(v)
        elif isinstance(v, dict):
            parts = _NAME_PARTS if t == "HumanName" else _ADDRESS_PARTS if t == "Address" else ()
            for k in parts:
                x = v.get(k)
                if isinstance(x, list):
                    strings.extend(s for s in x if isinstance(s, str))
                elif isinstance(x, str):
                    strings.append(x)
            if t == "Extension" or "url" in v:
                for k, x in v.items():
                    if k.startswith("value") and isinstance(x, str):
                        strings.append(x)
    return [{"param": code, "value": normalize_string(s), "exact": s.replace("\x00", "")} for s in strings if s]


def _date_rows(code: str, values: Values) -> list[dict]:
    rows: list[dict] = []
    for t, v in values:
        if isinstance(v, str):
            r = date_range(v)
            if r:
                rows.append({"param": code, "lo": r[0], "hi": r[1]})
        elif isinstance(v, dict):
            if t == "Period" or "start" in v or "end" in v:
                s = date_range(v["start"]) if isinstance(v.get("start"), str) else None
                e = date_range(v["end"]) if isinstance(v.get("end"), str) else None
                if s or e:
                    rows.append({"param": code, "lo": s[0] if s else MIN_US, "hi": e[1] if e else MAX_US})
            elif t == "Timing" or "event" in v or "repeat" in v:
                events = [date_range(x) for x in v.get("event") or [] if isinstance(x, str)]
                rs = [r for r in events if r]
                bounds = (v.get("repeat") or {}).get("boundsPeriod")
                if bounds:
                    rows.extend(_date_rows(code, [("Period", bounds)]))
                if rs:
                    rows.append({"param": code, "lo": min(r[0] for r in rs), "hi": max(r[1] for r in rs)})
    return rows


def _reference_rows(code: str, values: Values) -> list[dict]:
    # type, id and version come out of parse_reference matched by patterns of at most 64 ASCII
    # characters: nothing for ``cut`` to cut (it runs ~15 times a resource otherwise)
    rows: list[dict] = []
    for _, v in values:
        if isinstance(v, dict):
            ref = v.get("reference")
            rtype, rid, ver, url = parse_reference(ref) if isinstance(ref, str) else (None, None, None, None)
            ident = v.get("identifier")
            id_system = id_value = None
            if isinstance(ident, dict):
                id_system, id_value = ident.get("system"), ident.get("value")
            if rid or url or id_value:
                rows.append(
                    {
                        "param": code,
                        "target_type": rtype,
                        "target_id": rid,
                        "target_version": ver,
                        "url": url and cut(url),
                        "id_system": id_system and cut(id_system),
                        "id_value": id_value and cut(id_value),
                    }
                )
        elif isinstance(v, str):
            rtype, rid, ver, url = parse_reference(v)
            if rid or url:
                rows.append(
                    {
                        "param": code,
                        "target_type": rtype,
                        "target_id": rid,
                        "target_version": ver,
                        "url": url and cut(url),
                        "id_system": None,
                        "id_value": None,
                    }
                )
    return rows


def _to_decimal(v: Any) -> Decimal | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, Decimal):
        return v
    if isinstance(v, (int, float)):
        return parse_decimal(repr(v))
    return None


def _number_rows(code: str, values: Values) -> list[dict]:
    rows = []
    for _, v in values:
        d = _to_decimal(v)
        if d is not None:
            lo, hi = precision_range(d)
            rows.append({"param": code, "value": float(d), "lo": lo, "hi": hi})
    return rows


def _quantity_rows(code: str, values: Values) -> list[dict]:
    rows = []
    for t, v in values:
        if not isinstance(v, dict):
            continue
        d = _to_decimal(v.get("value"))
        if d is None:
            continue
        lo, hi = precision_range(d)
        system: str | None
        if t == "Money" or "currency" in v:
            system, qcode, unit = "urn:iso:std:iso:4217", v.get("currency"), v.get("currency")
        else:
            system, qcode, unit = v.get("system"), v.get("code"), v.get("unit")
        rows.append({"param": code, "value": float(d), "lo": lo, "hi": hi, "system": cut(system), "code": cut(qcode), "unit": cut(unit)})
    return rows


def _uri_rows(code: str, values: Values) -> list[dict]:
    return [{"param": code, "value": cut(v)} for _, v in values if isinstance(v, str) and v]


def rows_for(p: SearchParam, values: Values, res_type: str | None = None) -> tuple[str, list[dict]]:
    """Convert values of parameter ``p`` of ``res_type`` into ``(table kind, rows)``."""
    t = p.type
    if p.xpath_usage == "phonetic":
        return "token", phonetic_rows(p.code, values)
    if t == "token":
        return "token", _token_rows(p.code, values, p, res_type)
    if t == "string":
        return "string", _string_rows(p.code, values)
    if t == "date":
        return "date", _date_rows(p.code, values)
    if t == "reference":
        return "reference", _reference_rows(p.code, values)
    if t == "number":
        return "number", _number_rows(p.code, values)
    if t == "quantity":
        return "quantity", _quantity_rows(p.code, values)
    if t == "uri":
        return "uri", _uri_rows(p.code, values)
    if t == "special" and p.code == "near":
        return "number", position_rows(values)
    return t, []


def _dedupe(rows: list[dict]) -> list[dict]:
    if len(rows) < 2:  # most parameters of a resource have one row
        return rows
    seen, out = set(), []
    for r in rows:
        key = tuple(r.items())
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


# ----------------------------------------------------------------------------- composites


def _walk_path(resource: dict, res_type: str, branch: str) -> list:
    """Elements at a plain path (``Observation.component``) or the resource itself (``Observation``)."""
    if branch == res_type:
        return [resource]
    elems = branch.split(".")[1:]
    cur: list = [resource]
    for e in elems:
        nxt: list = []
        for c in cur:
            v = c.get(e) if isinstance(c, dict) else None
            if isinstance(v, list):
                nxt.extend(x for x in v if isinstance(x, dict))
            elif isinstance(v, dict):
                nxt.append(v)
        cur = nxt
    return cur


def _relative_values(elem: dict, expression: str) -> Values:
    """Component expressions: ``code``, ``value``, ``value.as(Quantity) | value.as(Range)``."""
    out: Values = []
    for branch in (b.strip() for b in expression.split("|")):
        name, _, cast = branch.partition(".as(")
        if cast:
            t = cast.rstrip(")")
            key = name + t[0].upper() + t[1:]
            if key in elem:
                out.append((t, elem[key]))
        elif name in elem:
            v = elem[name]
            out.extend((name, x) for x in (v if isinstance(v, list) else [v]))
        else:  # a choice element without cast: valueQuantity, valueCodeableConcept, ...
            for k, v in elem.items():
                if k.startswith(name) and k[len(name) :][:1].isupper():
                    out.append((k[len(name) :], v))
    return out


def _composite_rows(res_type: str, p: SearchParam, resource: dict) -> list[dict]:
    from .parameters import component_param

    (d1, e1), (d2, e2) = p.components
    p1, p2 = component_param(d1, res_type), component_param(d2, res_type)
    if p1 is None or p2 is None:
        return []
    rows: list[dict] = []
    for branch in (b.strip() for b in (p.expression or "").split("|")):
        for elem in _walk_path(resource, res_type, branch):
            seconds = rows_for(p2, _relative_values(elem, e2))[1]
            if not seconds:  # most composites of an element have no value of their kind
                continue
            firsts = _token_rows(p.code, _relative_values(elem, e1), p1)
            for a in firsts:
                if a["code"] is None:
                    continue
                for b in seconds:
                    row = {
                        "param": p.code,
                        "c1_system": a["system"],
                        "c1_code": a["code"],
                        "c2_system": None,
                        "c2_code": None,
                        "c2_value": None,
                        "c2_lo": None,
                        "c2_hi": None,
                        "c2_text": None,
                    }
                    if p2.type == "token":
                        row.update(c2_system=b["system"], c2_code=b["code"])
                    elif p2.type == "quantity":
                        row.update(c2_system=b["system"], c2_code=b["code"], c2_value=b["value"])
                    elif p2.type == "number":
                        row.update(c2_value=b["value"])
                    elif p2.type == "date":
                        row.update(c2_lo=b["lo"], c2_hi=b["hi"])
                    elif p2.type == "string":
                        row.update(c2_text=b["value"])
                    rows.append(row)
    return rows


# _id and _lastUpdated are answered from the resources table, never from index rows
_FROM_COLUMNS = frozenset({"_id", "_lastUpdated"})


def other_reference_rows(resource: dict, covered: Iterable[dict], holders: list[dict] | None = None) -> list[dict]:
    """Reference index rows (param ``OTHER_REFERENCE``) for every literal reference in
    ``resource`` (any depth, contained resources included) whose target no row of ``covered``
    (the resource's search-parameter reference rows) already names. ``holders``: the
    resource's ``reference_holders``, when the caller has walked it already."""
    # every Reference.reference string: the only string-valued "reference" element in R4
    found = {holder["reference"] for holder in (reference_holders(resource) if holders is None else holders)}
    if not found:
        return []
    have = {(r["target_type"], r["target_id"], r["url"]) for r in covered}
    rows: list[dict] = []
    for ref in sorted(found):
        rtype, rid, ver, url = parse_reference(ref)
        key = (cut(rtype), cut(rid), cut(url))
        if (rid or url) and key not in have:
            have.add(key)
            rows.append(
                {
                    "param": OTHER_REFERENCE,
                    "target_type": key[0],
                    "target_id": key[1],
                    "target_version": cut(ver),
                    "url": key[2],
                    "id_system": None,
                    "id_value": None,
                }
            )
    return rows


# ----------------------------------------------------------------------------- the per-type plan

_META_KEYS = frozenset({"meta"})


def _root_keys(res_type: str, element: str) -> set[str]:
    """The JSON keys of a resource that FHIRPath's ``res_type.element`` reads: the element and
    its ``_`` part, and for a choice element every ``element<Type>`` and its ``_`` part."""
    keys = {element, "_" + element}
    for t in _CHOICE.get(f"{res_type}.{element}", ()):
        keys |= {element + t[0].upper() + t[1:], "_" + element + t[0].upper() + t[1:]}
    return keys


_BRANCH_HEAD = re.compile(r"^\(?([A-Z][A-Za-z]+)\.([a-z][A-Za-z]*)")


def _reads(res_type: str, code: str, p: SearchParam) -> frozenset[str] | None:
    """The top-level keys of a ``res_type`` resource the values of ``p`` can come from, so that
    a resource with none of them has no rows for ``p``; None when that is not known (every
    resource is then evaluated). Known only for pure navigation (paths, ``where``, ``as``,
    unions of those: what the plain-Python walkers evaluate) rooted at ``res_type``: navigating
    into an element that is absent gives nothing, whatever follows."""
    if code in ("_tag", "_security", "_profile", "_source"):
        return _META_KEYS
    if code == "address-administrative-code":
        return frozenset({"address"})
    if res_type == "Patient" and code == "deceased":
        return None  # a row (false) for every Patient
    expression = p.expression or ""
    if p.type == "composite":
        branches = [b.strip() for b in expression.split("|")]
        if any(b == res_type or not re.fullmatch(rf"{res_type}(\.[a-z][A-Za-z]*)+", b) for b in branches):
            return None
    else:
        g = getter(res_type, code)
        if g is None:
            return frozenset()  # no expression: never any rows
        if g[0] != "fast":
            return None
        branches = [b.strip() for b in expression.split(" | ")]
    keys: set[str] = set()
    for branch in branches:
        m = _BRANCH_HEAD.match(branch)
        if m is None or m.group(1) != res_type:
            return None
        keys |= _root_keys(res_type, m.group(2))
    return frozenset(keys)


@cache
def _plan(res_type: str) -> tuple[tuple[str, SearchParam, frozenset[str] | None, Callable[[dict], Values] | None], ...]:
    """Every indexed parameter of ``res_type`` with the top-level keys its values come from
    (``_reads``) and the function that finds them (``getter``; None for a composite), built
    once per type: a resource is only walked for the parameters whose elements it has."""
    plan = []
    for code, p in params_for(res_type).items():
        if code in _FROM_COLUMNS:
            continue
        g = None if p.type == "composite" else getter(res_type, code)
        plan.append((code, p, _reads(res_type, code, p), g[1] if g else None))
    return tuple(plan)


def warm_up(res_type: str) -> None:
    """Build ``res_type``'s extraction plan now (service/warm.py)."""
    _plan(res_type)


def extract_index(resource: dict, holders: list[dict] | None = None) -> IndexRows:
    """All index rows for ``resource`` (a parsed FHIR JSON dict). ``holders``: its
    ``reference_holders`` (any copy that shares its objects below the top level, such as the
    resource before ``stamp``), when the caller has them: a walk fewer."""
    res_type = resource.get("resourceType")
    rows = IndexRows()
    if not isinstance(res_type, str):
        return rows
    present = resource.keys()
    for _code, p, reads, values_of in _plan(res_type):
        if reads is not None and present.isdisjoint(reads):
            continue
        if p.type == "composite":
            rows.composite.extend(_dedupe(_composite_rows(res_type, p, resource)))
            continue
        if values_of is None:
            continue
        try:
            values = values_of(resource)
        except Exception:  # noqa: BLE001 - a FHIRPath quirk must not block the write (as _param_rows)
            continue
        if values:
            kind, new = rows_for(p, values, res_type)
            if new:
                getattr(rows, kind).extend(_dedupe(new))
    if res_type != "Bundle":  # a Bundle holds other resources as they were sent: not references of its own
        rows.reference.extend(other_reference_rows(resource, rows.reference, holders))
    if res_type == "Patient":
        rows.mpi = [{"key": key} for key in stored_keys(mpi_features(resource))]
    return rows


def _param_rows(res_type: str, code: str, p: SearchParam, resource: dict) -> tuple[str, list[dict]]:
    """(table kind, rows) of one non-composite parameter of ``resource``, as :func:`extract_index`
    stores them."""
    g = getter(res_type, code)
    if g is None:
        return p.type, []
    try:
        values = g[1](resource)
    except Exception:  # noqa: BLE001 - a FHIRPath quirk must not block the write
        return p.type, []
    if not values:
        return p.type, []
    return rows_for(p, values, res_type)


def param_rows(resource: dict, codes: Iterable[str]) -> dict[str, list[dict]]:
    """The index rows of only the parameters ``codes`` of ``resource`` (no composites, no
    ``_id``/``_lastUpdated``), by parameter: the rows :func:`extract_index` would store for
    them, for judging a resource against search criteria without the database (the
    subscription matcher, ``subscriptions/rowmatch.py``)."""
    res_type = resource.get("resourceType")
    out: dict[str, list[dict]] = {}
    if not isinstance(res_type, str):
        return out
    known = params_for(res_type)
    for code in codes:
        p = known.get(code)
        if p is None or code in _FROM_COLUMNS or p.type == "composite":
            continue
        out[code] = _param_rows(res_type, code, p, resource)[1]
    return out
