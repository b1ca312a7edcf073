"""Search-parameter registry built from the official R4 4.0.1 SearchParameter definitions.

The vendored ``data/search_parameters.json.gz`` (see ``data/README.md``) is
loaded once. For each resource type, :func:`params_for` returns the parameters
that apply to it, with FHIRPath expressions pruned to that type's branch of
the shared unions (``clinical-patient`` lists 32 types; Encounter only needs
``Encounter.subject.where(resolve() is Patient)``), which makes extraction
several times faster.

What the server can actually search is decided here too:
:func:`capability_search_params` lists only supported parameters, so the
CapabilityStatement never claims one that does not work.
"""

from __future__ import annotations

import gzip
import json
import re
from dataclasses import dataclass, field
from functools import cache, lru_cache
from importlib import resources as ilr

#: token modifiers answered by the terminology (search/terminology_codes.py)
TERMINOLOGY_MODIFIERS = frozenset({"in", "not-in", "below", "above"})
# modifiers implemented per parameter type (``missing`` is valid on all of them)
MODIFIERS: dict[str, frozenset[str]] = {
    "string": frozenset({"exact", "contains", "missing"}),
    "token": frozenset({"not", "text", "missing"}) | TERMINOLOGY_MODIFIERS,  # + of-type on Identifier params (see below)
    "reference": frozenset({"identifier", "missing", "above", "below"}),  # + [type] modifiers; above/below: search/hierarchy.py
    "date": frozenset({"missing"}),
    "number": frozenset({"missing"}),
    "quantity": frozenset({"missing"}),
    "uri": frozenset({"below", "above", "contains", "missing"}),
    "composite": frozenset({"missing"}),
    "special": frozenset({"missing"}),  # Location near, the one supported (search/near.py)
}

# Parameters that exist in the package but that we do not implement honestly.
_UNSUPPORTED_CODES = frozenset({"_query", "_filter", "_content", "_text", "_has"})
#: the one special parameter supported: Location's ``near`` (search/near.py)
NEAR = ("near", "Location")
#: Resource-level parameters: the only ones a search across all types (no _type) accepts
COMMON_PARAMS = ("_id", "_lastUpdated", "_tag", "_profile", "_security", "_source", "_list")


@dataclass(frozen=True)
class SearchParam:
    """One search parameter as it applies to one resource type."""

    code: str
    url: str
    type: str
    expression: str | None
    base: tuple[str, ...]
    targets: tuple[str, ...] = ()
    components: tuple[tuple[str, str], ...] = ()  # (definition url, expression)
    xpath_usage: str = "normal"
    description: str | None = None
    supported: bool = True
    #: identifier-typed token params accept :of-type
    of_type: bool = False
    modifiers: frozenset[str] = field(default_factory=frozenset)


#: Server-defined parameters (not in the R4 package). The administrative-code one finds
#: SATUSEHAT addresses by province/city/district/village code, ``system`` being the
#: sub-extension name: ``address-administrative-code=province|31``.
CUSTOM_BASE_URL = "https://fhir-server.id/SearchParameter/"
CUSTOM_PARAMS: list[dict] = [
    {
        "url": CUSTOM_BASE_URL + "address-administrative-code",
        "code": "address-administrative-code",
        "base": ["Patient", "Practitioner", "RelatedPerson", "Organization", "Location"],
        "type": "token",
        "expression": " | ".join(
            f"{t}.address.extension('https://fhir.kemkes.go.id/r4/StructureDefinition/administrativeCode').extension.value"
            for t in ("Patient", "Practitioner", "RelatedPerson", "Organization", "Location")
        ),
        "description": "SATUSEHAT administrative code of an address (province|31, city|3171, district|..., village|...)",
    },
]


def custom_search_parameters() -> list[dict]:
    """The server-defined parameters as FHIR SearchParameter resources (stored at start-up)."""
    return [
        {
            "resourceType": "SearchParameter",
            "id": p["code"],
            "url": p["url"],
            "version": "0.1.0",
            "name": p["code"].replace("-", "_"),
            "status": "active",
            "experimental": False,
            "publisher": "fhir-server-id contributors",
            "description": p["description"],
            "code": p["code"],
            "base": p["base"],
            "type": p["type"],
            "expression": p["expression"],
            "xpathUsage": "normal",
        }
        for p in CUSTOM_PARAMS
    ]


@lru_cache(maxsize=1)
def _raw() -> list[dict]:
    data = ilr.files("fhir_server.search").joinpath("data/search_parameters.json.gz").read_bytes()
    return json.loads(gzip.decompress(data)) + CUSTOM_PARAMS


@lru_cache(maxsize=1)
def _by_url() -> dict[str, dict]:
    return {p["url"]: p for p in _raw()}


@lru_cache(maxsize=1)
def _summary_data() -> dict:
    return json.loads(ilr.files("fhir_server.search").joinpath("data/summary_elements.json").read_text())


@lru_cache(maxsize=1)
def compartments() -> dict[str, dict[str, list[str]]]:
    """Compartment code (Patient, Encounter, ...) -> resource type -> param codes."""
    return json.loads(ilr.files("fhir_server.search").joinpath("data/compartments.json").read_text())


@lru_cache(maxsize=1)
def resource_types() -> tuple[str, ...]:
    """All concrete R4 resource types (from the StructureDefinitions), sorted."""
    return tuple(sorted(t for t in _summary_data() if t not in ("Resource", "DomainResource")))


@lru_cache(maxsize=1)
def _resource_type_set() -> frozenset[str]:
    return frozenset(resource_types())


def is_search_type(name: str) -> bool:
    """A concrete R4 resource type (membership test for the hot parsing path)."""
    return name in _resource_type_set()


def summary_info(res_type: str) -> dict[str, list[str]]:
    """``{"summary": [...], "mandatory": [...], "choice": [...]}`` top-level element names."""
    return _summary_data().get(res_type, {"summary": [], "mandatory": [], "choice": []})


_PATH_RE = re.compile(r"^\(?([A-Z][A-Za-z]+)((?:\.[a-z][A-Za-z]*)+)(?: as [A-Za-z]+\))?$")


@cache
def _single_paths(res_type: str) -> frozenset[str]:
    return frozenset(p.removesuffix("[x]") for p in summary_info(res_type).get("single", ()))


def is_single_valued(res_type: str, expression: str | None) -> bool:
    """True if ``expression`` is a plain path whose every step has max cardinality 1."""
    if expression is None:
        return False
    m = _PATH_RE.match(expression)
    if not m or m.group(1) != res_type or (expression.startswith("(") != expression.endswith(")")):
        return False
    single = _single_paths(res_type)
    elems = m.group(2)[1:].split(".")
    return all(".".join(elems[: i + 1]) in single for i in range(len(elems)))


def _split_union(expr: str) -> list[str]:
    """Split a FHIRPath expression on top-level ``|`` (outside parentheses and quotes)."""
    parts, depth, quote, start = [], 0, False, 0
    for i, ch in enumerate(expr):
        if ch == "'" and (i == 0 or expr[i - 1] != "\\"):
            quote = not quote
        elif quote:
            continue
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            parts.append(expr[start:i].strip())
            start = i + 1
    parts.append(expr[start:].strip())
    return [p for p in parts if p]


def _root(branch: str) -> str:
    b = branch.lstrip("( ")
    end = 0
    while end < len(b) and (b[end].isalnum() or b[end] == "_"):
        end += 1
    return b[:end]


def prune_expression(expr: str | None, res_type: str) -> str | None:
    """Keep only the union branches rooted at ``res_type`` (or Resource/DomainResource)."""
    if not expr:
        return expr
    branches = _split_union(expr)
    keep = []
    for b in branches:
        root = _root(b)
        if root == res_type:
            keep.append(b)
        elif root in ("Resource", "DomainResource"):
            keep.append(b.replace(root, res_type, 1))
    if not keep:
        return None
    return " | ".join(keep)


COMPOSITE_SECOND = ("token", "quantity", "date", "string", "number")


def composite_types(raw_or_param: dict | SearchParam) -> tuple[str, ...]:
    """The types of a composite parameter's components, from its SearchParameter JSON or its SearchParam."""
    comps = raw_or_param.get("component", []) if isinstance(raw_or_param, dict) else [{"definition": d} for d, _ in raw_or_param.components]
    return tuple(_by_url().get(c["definition"], {}).get("type", "?") for c in comps)


def _composite_ok(raw: dict, expr: str | None) -> bool:
    """Two components, a token first; both relative paths (not %resource); walkable base."""
    types = composite_types(raw)
    if len(types) != 2 or types[0] != "token" or types[1] not in COMPOSITE_SECOND:
        return False
    if any(c["expression"].startswith("%") for c in raw["component"]):
        return False
    if not expr:
        return False
    return all((_PATH_RE.match(b) or b.isalpha()) and "(" not in b for b in _split_union(expr))


def _is_identifier_param(code: str, expr: str | None) -> bool:
    if not expr:
        return False
    return code == "identifier" or expr.rstrip(")").endswith(".identifier")


def _make(raw: dict, res_type: str) -> SearchParam:
    code, ptype = raw["code"], raw["type"]
    expr = prune_expression(raw.get("expression"), res_type)
    supported = True
    if code in _UNSUPPORTED_CODES or (ptype == "special" and (code, res_type) != NEAR):
        supported = False
    elif (code, res_type) == NEAR:
        supported = True  # a position's latitude and longitude (search/near.py)
    elif raw.get("xpathUsage") == "phonetic" and ptype == "string":
        supported = True  # the MPI's Indonesian name keys (search/phonetic.py)
    elif raw.get("xpathUsage") in ("phonetic", "nearby", "distance"):
        supported = False  # would need soundex / geo maths
    elif code not in ("_id", "_lastUpdated") and not expr:
        supported = False
    elif ptype == "composite":
        supported = _composite_ok(raw, expr)
    of_type = ptype == "token" and _is_identifier_param(code, expr)
    mods = MODIFIERS.get(ptype, frozenset())
    if raw.get("xpathUsage") == "phonetic":
        mods = frozenset({"missing"})  # keys, not strings: no :exact or :contains
    if of_type:
        mods = mods | {"of-type"}
    return SearchParam(
        code=code,
        url=raw["url"],
        type=ptype,
        expression=expr,
        base=tuple(raw["base"]),
        targets=tuple(raw.get("target", ())),
        components=tuple((c["definition"], c["expression"]) for c in raw.get("component", ())),
        xpath_usage=raw.get("xpathUsage", "normal"),
        description=raw.get("description"),
        supported=supported,
        of_type=of_type,
        modifiers=mods,
    )


@cache
def all_params_for(res_type: str) -> dict[str, SearchParam]:
    """Every parameter defined for ``res_type`` (supported or not), by code."""
    out: dict[str, SearchParam] = {}
    for raw in _raw():
        bases = raw["base"]
        if res_type in bases or "Resource" in bases or "DomainResource" in bases:
            if raw["code"] in out and out[raw["code"]].supported:
                continue  # _id is defined twice in the package; keep the first good one
            out[raw["code"]] = _make(raw, res_type)
    return out


@cache
def params_for(res_type: str) -> dict[str, SearchParam]:
    """The supported search parameters for ``res_type``, by code."""
    return {c: p for c, p in all_params_for(res_type).items() if p.supported}


def param_by_url(url: str) -> dict | None:
    """The slim raw definition of a SearchParameter by canonical URL."""
    return _by_url().get(url)


@cache
def component_param(url: str, res_type: str) -> SearchParam | None:
    """The parameter a composite's component refers to (cached: extraction asks on every write)."""
    raw = _by_url().get(url)
    return _make(raw, res_type) if raw else None


def capability_search_params(res_type: str) -> list[dict]:
    """CapabilityStatement.rest.resource.searchParam entries for ``res_type``."""
    out = []
    for code, p in sorted(params_for(res_type).items()):
        entry = {"name": code, "definition": p.url, "type": p.type}
        if p.description:
            entry["documentation"] = p.description
        out.append(entry)
    return out


def search_includes(res_type: str) -> list[str]:
    """CapabilityStatement searchInclude values (``Type:param`` for each reference param, and ``*``)."""
    refs = sorted(c for c, p in params_for(res_type).items() if p.type == "reference")
    return ["*"] + [f"{res_type}:{c}" for c in refs]


@lru_cache(maxsize=1)
def _revinclude_index() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for t in resource_types():
        for c, p in params_for(t).items():
            if p.type != "reference":
                continue
            for target in p.targets:
                out.setdefault(target, []).append(f"{t}:{c}")
    return {k: sorted(set(v)) for k, v in out.items()}


def search_revincludes(res_type: str) -> list[str]:
    """CapabilityStatement searchRevInclude values: ``Other:param`` whose targets include ``res_type``."""
    return _revinclude_index().get(res_type, [])
