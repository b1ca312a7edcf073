"""Query-string parsing: ``[(name, value), ...]`` -> a typed :class:`SearchQuery`.

Grammar handled (http://hl7.org/fhir/R4/search.html): ``name[:modifier]=value``,
OR by comma, AND by repeating the parameter, backslash escapes (``\\,`` ``\\|``
``\\$`` ``\\\\``), prefixes on ordered types, chains of any depth
(``subject:Patient.identifier=s|v``), reverse chains (``_has:T:ref:param=v``,
nested), and the result parameters. Malformed values raise ``FhirError(400)``;
unknown or unsupported parameters are ignored with a warning Issue, or raise
``FhirError(400)`` when ``strict``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal

from .. import paging
from ..errors import FhirError, Issue, error, warning
from ..model.ids import is_valid_id
from .hierarchy import HierarchyValue, parse_hierarchy_value
from .near import NearValue, parse_near_value
from .parameters import COMMON_PARAMS, TERMINOLOGY_MODIFIERS, SearchParam, composite_types, is_search_type, params_for
from .subsetting import SUMMARY_MODES, element_names
from .values import date_range, normalize_string, parse_decimal, precision_range

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
ORDERED = ("date", "number", "quantity")
TOTAL_MODES = ("none", "estimate", "accurate")
#: how the answer is written, not what it holds
FORMAT_PARAMS = frozenset({"_format", "_pretty"})
CURSOR = "_cursor"
# Guards against queries that cost the database more than any real client needs:
# 500 AND-ed criteria once drove PostgreSQL's planner out of memory.
MAX_CRITERIA = 30  # AND-ed criteria, counting every chain / _has level
MAX_VALUES = 100  # OR-ed values in one parameter
MAX_CHAIN_DEPTH = 4
MAX_SORT_KEYS = 5
MAX_INCLUDES = 20


# ----------------------------------------------------------------------------- typed values


@dataclass(frozen=True)
class DateValue:
    prefix: str
    lo: int
    hi: int


@dataclass(frozen=True)
class NumberValue:
    prefix: str
    value: Decimal
    lo: float
    hi: float


@dataclass(frozen=True)
class QuantityValue:
    prefix: str
    value: Decimal
    lo: float
    hi: float
    system: str | None
    code: str | None


@dataclass(frozen=True)
class TokenValue:
    system: str | None  # None: any system; "": no system
    code: str | None  # None: any code (``system|``)


@dataclass(frozen=True)
class OfTypeValue:
    type_system: str
    type_code: str
    value: str


#: A composite's second component, by its ``second_type``: date, number, quantity, token, else a string.
ComponentValue = DateValue | NumberValue | QuantityValue | TokenValue | str


@dataclass(frozen=True)
class CompositeValue:
    first: TokenValue
    second_type: str
    second: ComponentValue


#: One ORed value of a criterion; which one follows from the criterion's ``ptype`` and ``modifier``.
SearchValue = DateValue | NumberValue | QuantityValue | TokenValue | OfTypeValue | CompositeValue | NearValue | HierarchyValue | str


@dataclass
class Criterion:
    """One AND term: a parameter with ORed values (or a chain / reverse chain)."""

    res_types: tuple[str, ...]
    code: str
    param: SearchParam | None  # None for _id / _lastUpdated handled on columns
    ptype: str
    modifier: str | None = None
    values: list[SearchValue] = field(default_factory=list)
    missing: bool | None = None
    #: chain: reference param ``code`` on res_types -> criterion on target types
    chain: Criterion | None = None
    chain_types: tuple[str, ...] = ()
    #: reverse chain: resources of ``has_type`` whose ``has_param`` points here and match ``has``
    has: Criterion | None = None
    has_type: str | None = None
    has_param: str | None = None


@dataclass(frozen=True)
class SortKey:
    code: str
    descending: bool
    param: SearchParam | None  # None for _id / _lastUpdated


@dataclass(frozen=True)
class IncludeSpec:
    source_type: str
    param: str  # "*" for all reference params
    target_type: str | None
    iterate: bool
    reverse: bool


@dataclass
class SearchQuery:
    res_types: tuple[str, ...]
    criteria: list[Criterion] = field(default_factory=list)
    sort: list[SortKey] = field(default_factory=list)
    count: int | None = None
    includes: list[IncludeSpec] = field(default_factory=list)
    total: str = "none"
    summary: str | None = None
    elements: list[str] | None = None
    cursor: paging.PageToken | None = None
    cursor_raw: str | None = None
    issues: list[Issue] = field(default_factory=list)
    #: the parameters that were understood, for the self link (cursor excluded)
    used: list[tuple[str, str]] = field(default_factory=list)


# ----------------------------------------------------------------------------- escaping


def split_unescaped(value: str, sep: str) -> list[str]:
    """Split on ``sep`` not preceded by a backslash; escapes are kept for the next split."""
    if "\\" not in value:
        return value.split(sep)
    parts, cur, i = [], [], 0
    while i < len(value):
        ch = value[i]
        if ch == "\\" and i + 1 < len(value):
            cur.append(value[i : i + 2])
            i += 2
            continue
        if ch == sep:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    parts.append("".join(cur))
    return parts


def unescape(value: str) -> str:
    if "\\" not in value:
        return value
    return re.sub(r"\\([,$|\\])", r"\1", value)


# ----------------------------------------------------------------------------- errors


class _Unsupported(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _too_costly(why: str) -> FhirError:
    return FhirError(400, [error("too-costly", why)])


def _bad(name: str, why: str) -> FhirError:
    return FhirError(400, [error("invalid", f"Invalid search parameter '{name}': {why}", name)])


# ----------------------------------------------------------------------------- value parsing


def _split_prefix(raw: str) -> tuple[str, str]:
    if len(raw) > 2 and raw[:2] in PREFIXES and (raw[2].isdigit() or raw[2] in "-+."):
        return raw[:2], raw[2:]
    if len(raw) > 2 and raw[:2].isalpha() and raw[:2].islower() and not raw[2].isalpha():
        raise ValueError(f"unknown prefix '{raw[:2]}'")
    return "eq", raw


def parse_date_value(raw: str) -> DateValue:
    prefix, rest = _split_prefix(unescape(raw))
    r = date_range(rest)
    if r is None:
        raise ValueError(f"'{raw}' is not a valid date/dateTime (use YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm[:ss][zone])")
    return DateValue(prefix, r[0], r[1])


def parse_number_value(raw: str) -> NumberValue:
    prefix, rest = _split_prefix(unescape(raw))
    d = parse_decimal(rest)
    if d is None:
        raise ValueError(f"'{raw}' is not a number")
    lo, hi = precision_range(d)
    return NumberValue(prefix, d, lo, hi)


def parse_quantity_value(raw: str) -> QuantityValue:
    parts = split_unescaped(raw, "|")
    if len(parts) not in (1, 3):
        raise ValueError(f"'{raw}' is not number|system|code")
    prefix, rest = _split_prefix(unescape(parts[0]))
    d = parse_decimal(rest)
    if d is None:
        raise ValueError(f"'{raw}' does not start with a number")
    lo, hi = precision_range(d)
    system = unescape(parts[1]) or None if len(parts) == 3 else None
    code = unescape(parts[2]) or None if len(parts) == 3 else None
    return QuantityValue(prefix, d, lo, hi, system, code)


def _decoded_plus(code: str) -> str:
    """A code that begins with a space and a digit was a '+' that URL decoding turned into a space
    (``phone=+6281234567`` sent unencoded, Indonesian numbers being +62): read as the '+' it was.
    A code never begins with whitespace (datatypes.html#code); an identifier or phone number
    stored with a leading space (which FHIR says should be trimmed) is the one value this stops
    finding by that same text."""
    return "+" + code[1:] if len(code) > 1 and code[0] == " " and code[1].isdigit() else code


def parse_token_value(raw: str) -> TokenValue:
    parts = split_unescaped(raw, "|")
    if len(parts) == 1:
        return TokenValue(None, _decoded_plus(unescape(parts[0])))
    if len(parts) == 2:
        system, code = unescape(parts[0]), _decoded_plus(unescape(parts[1]))
        if not system and not code:
            raise ValueError("'|' alone is not a token")
        return TokenValue(system, code or None)
    raise ValueError(f"'{raw}' has more than one unescaped '|'")


def parse_composite_value(raw: str, second_type: str) -> CompositeValue:
    parts = split_unescaped(raw, "$")
    if len(parts) != 2:
        raise ValueError(f"'{raw}' is not token$value (one unescaped '$')")
    first = parse_token_value(parts[0])
    if second_type == "date":
        second: ComponentValue = parse_date_value(parts[1])
    elif second_type == "number":
        second = parse_number_value(parts[1])
    elif second_type == "quantity":
        second = parse_quantity_value(parts[1])
    elif second_type == "token":
        second = parse_token_value(parts[1])
    else:
        second = unescape(parts[1])
    return CompositeValue(first, second_type, second)


def parse_of_type_value(raw: str) -> OfTypeValue:
    parts = [unescape(p) for p in split_unescaped(raw, "|")]
    if len(parts) != 3 or not all(parts[1:]):
        raise ValueError(f"'{raw}' is not type-system|type-code|value")
    return OfTypeValue(*parts)


# ----------------------------------------------------------------------------- parameters

_COLUMN_PARAMS = {"_id": "token", "_lastUpdated": "date"}


def _param(res_types: tuple[str, ...], code: str) -> SearchParam | None:
    """The parameter if every type in ``res_types`` supports it (same code)."""
    found = None
    for t in res_types:
        p = params_for(t).get(code)
        if p is None:
            return None
        found = found or p
    return found


def _parse_values(name: str, ptype: str, modifier: str | None, p: SearchParam | None, raw: str) -> list[SearchValue]:
    out: list[SearchValue] = []
    for item in split_unescaped(raw, ","):
        if item == "":
            continue
        try:
            if ptype == "date":
                out.append(parse_date_value(item))
            elif ptype == "number":
                out.append(parse_number_value(item))
            elif ptype == "quantity":
                out.append(parse_quantity_value(item))
            elif ptype == "special":
                out.append(parse_near_value(item))  # the one special parameter supported (parameters.NEAR)
            elif ptype == "composite":
                assert p is not None  # composite parameters come from the registry, never from the column ones
                out.append(parse_composite_value(item, composite_types(p)[1]))
            elif ptype == "token" and modifier == "of-type":
                out.append(parse_of_type_value(item))
            elif ptype == "token" and modifier == "text":
                out.append(normalize_string(unescape(item)))
            elif ptype == "token" and modifier in TERMINOLOGY_MODIFIERS:
                out.append(unescape(item))  # a value set or system|code: its codes come later (terminology_codes.py)
            elif ptype == "reference" and modifier in ("above", "below"):
                out.append(parse_hierarchy_value(unescape(item), p))
            elif ptype == "token" or (ptype == "reference" and modifier == "identifier"):
                out.append(parse_token_value(item))
            else:
                out.append(unescape(item))
        except ValueError as e:
            raise _bad(name, str(e)) from None
    if not out:
        raise _bad(name, "empty value")
    if len(out) > MAX_VALUES:
        raise _too_costly(f"'{name}' has {len(out)} values; at most {MAX_VALUES} are allowed")
    return out


def _criterion(res_types: tuple[str, ...], name: str, raw: str, full_name: str) -> Criterion:
    """Parse ``name`` (without the leading type) = ``raw`` on ``res_types``."""
    if name.startswith("_has:"):
        return _has_criterion(res_types, name, raw, full_name)
    head, dot, rest = name.partition(".")
    code, _, mod = head.partition(":")
    modifier = mod or None
    if code == "_list" and not dot:
        return _list_criterion(res_types, modifier, raw, full_name)
    if code in _COLUMN_PARAMS and not dot:
        ptype = _COLUMN_PARAMS[code]
        if modifier == "missing":
            if raw not in ("true", "false"):
                raise _bad(full_name, ":missing takes true or false")
            return Criterion(res_types, code, None, ptype, "missing", [], missing=raw == "true")
        if modifier and not (code == "_id" and modifier == "not"):
            raise _Unsupported(f"modifier ':{modifier}' is not supported on {code}")
        return Criterion(res_types, code, None, ptype, modifier, _parse_values(full_name, ptype, modifier, None, raw))
    p = _param(res_types, code)
    if p is None:
        raise _Unsupported(f"unknown or unsupported search parameter '{code}' for {'/'.join(res_types) or 'all types'}")
    if dot:
        if p.type != "reference":
            raise _bad(full_name, f"'{code}' is not a reference parameter, it cannot be chained")
        if modifier:
            if not is_search_type(modifier):
                raise _bad(full_name, f"chain type modifier '{modifier}' is not a resource type")
            targets: tuple[str, ...] = (modifier,)
        else:
            targets = tuple(t for t in p.targets if _chain_ok(t, rest))
            if not targets:
                raise _Unsupported(f"chained parameter '{rest}' is not supported on the targets of '{code}'")
        inner = _criterion(targets, rest, raw, full_name)
        return Criterion(res_types, code, p, "reference", None, [], chain=inner, chain_types=targets)
    if modifier == "missing":
        if raw not in ("true", "false"):
            raise _bad(full_name, ":missing takes true or false")
        return Criterion(res_types, code, p, p.type, "missing", [], missing=raw == "true")
    if modifier and modifier not in p.modifiers:
        if p.type == "reference" and is_search_type(modifier):
            return Criterion(res_types, code, p, p.type, modifier, _parse_values(full_name, p.type, None, p, raw))
        raise _Unsupported(f"modifier ':{modifier}' is not supported on '{code}' ({p.type})")
    return Criterion(res_types, code, p, p.type, modifier, _parse_values(full_name, p.type, modifier, p, raw))


def _list_criterion(res_types: tuple[str, ...], modifier: str | None, raw: str, full_name: str) -> Criterion:
    """``_list=[id]``: the resources a stored List's entries name (search.html#list); values are
    List ids, any of them. The functional lists (``$current-problems`` ...) are not kept here."""
    if modifier:
        raise _Unsupported(f"modifier ':{modifier}' is not supported on _list")
    ids = [unescape(item) for item in split_unescaped(raw, ",") if item]
    functional = [i for i in ids if i.startswith("$")]
    if functional:
        raise _Unsupported(f"_list: functional lists ({', '.join(functional)}) are not kept by this server")
    for list_id in ids:
        if not is_valid_id(list_id):
            raise _bad(full_name, f"'{list_id[:80]}' is not a List id")
    if not ids:
        raise _bad(full_name, "empty value")
    if len(ids) > MAX_VALUES:
        raise _too_costly(f"'{full_name}' has {len(ids)} values; at most {MAX_VALUES} are allowed")
    return Criterion(res_types, "_list", None, "list", None, list(ids))


def _chain_ok(target: str, rest: str) -> bool:
    code = rest.partition(".")[0].partition(":")[0]
    if code.startswith("_has"):
        return True
    return code in _COLUMN_PARAMS or code in params_for(target)


def _has_criterion(res_types: tuple[str, ...], name: str, raw: str, full_name: str) -> Criterion:
    parts = name.split(":", 3)
    if len(parts) < 4 or not all(parts[1:]):
        raise _bad(full_name, "_has needs the form _has:Type:reference-param:search-param")
    _, src, ref, rest = parts
    if not is_search_type(src):
        raise _bad(full_name, f"'{src}' is not a resource type")
    rp = params_for(src).get(ref)
    if rp is None or rp.type != "reference":
        raise _bad(full_name, f"'{ref}' is not a reference parameter of {src}")
    inner = _criterion((src,), rest, raw, full_name)
    return Criterion(res_types, "_has", None, "has", None, [], has=inner, has_type=src, has_param=ref)


# ----------------------------------------------------------------------------- result params


def _parse_sort(res_types: tuple[str, ...], raw: str, q: SearchQuery, strict: bool) -> list[SortKey]:
    keys = []
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        desc = item.startswith("-")
        code = item[1:] if desc else item
        if code in _COLUMN_PARAMS:
            keys.append(SortKey(code, desc, None))
            continue
        p = _param(res_types, code) if res_types else None
        if p is None or p.type not in ("string", "token", "date", "number", "quantity", "reference", "uri"):
            _report(q, strict, f"cannot sort by '{code}': unknown or not sortable")
            continue
        keys.append(SortKey(code, desc, p))
    return keys


def _parse_include(q: SearchQuery, modifier: str | None, raw: str, reverse: bool, strict: bool) -> None:
    name = "_revinclude" if reverse else "_include"
    if modifier not in (None, "iterate", "recurse"):
        raise _bad(name, f"unknown modifier ':{modifier}'")
    iterate = modifier is not None
    for item in split_unescaped(raw, ","):
        if item == "*":
            q.includes.append(IncludeSpec("*", "*", None, iterate, reverse))
            continue
        parts = item.split(":")
        if len(parts) not in (2, 3):
            raise _bad(name, f"'{item}' is not Type:param[:targetType]")
        src, code = parts[0], parts[1]
        target = parts[2] if len(parts) == 3 else None
        if not is_search_type(src):
            raise _bad(name, f"'{src}' is not a resource type")
        if code != "*":
            p = params_for(src).get(code)
            if p is None or p.type != "reference":
                _report(q, strict, f"{name} '{item}': '{code}' is not a reference parameter of {src}")
                continue
        if target and not is_search_type(target):
            raise _bad(name, f"'{target}' is not a resource type")
        q.includes.append(IncludeSpec(src, code, target, iterate, reverse))


def _report(q: SearchQuery, strict: bool, message: str) -> None:
    if strict:
        raise FhirError(400, [error("not-supported", message)])
    q.issues.append(warning("not-supported", message + " (ignored)"))


def _empty(q: SearchQuery, strict: bool, name: str) -> None:
    """``name=`` with no value (a form field left blank, ``_count=`` from a template): it asks for
    nothing, so it is left out as an unsupported parameter is (search.html#errors): a warning in
    the Bundle, or 400 with ``Prefer: handling=strict``. Never a filter on "no value" (that is
    ``:missing``), never a silent 400 for one mode and a silent pass for another."""
    text = f"Search parameter '{name}' has an empty value"
    if strict:
        raise FhirError(400, [error("invalid", text, name)])
    q.issues.append(warning("invalid", text + " (ignored)", name))


def drop_empty(params: list[tuple[str, str]], *, strict: bool, what: str) -> list[tuple[str, str]]:
    """``params`` without those of empty value (the rule of :func:`_empty`, for the history and
    AuditEvent searches, whose Bundles carry no warnings); 400 for the first if ``strict``."""
    for name, value in params:
        if value == "" and strict:
            raise FhirError(400, [error("invalid", f"{what} '{name}' has an empty value", name)])
    return [(name, value) for name, value in params if value != ""]


def parse_query(res_type: str | None, params: list[tuple[str, str]], *, strict: bool = False) -> SearchQuery:
    """Parse a search request for ``res_type`` (None: system-level search)."""
    types_raw = [v for n, v in params if n == "_type"]
    if res_type is not None:
        if not is_search_type(res_type):
            raise FhirError.of(404, "not-supported", f"Unknown resource type '{res_type}'")
        res_types: tuple[str, ...] = (res_type,)
    elif types_raw:
        names = [t.strip() for raw in types_raw for t in raw.split(",") if t.strip()]
        bad = [t for t in names if not is_search_type(t)]
        if bad:
            raise _bad("_type", f"unknown resource type(s) {', '.join(bad)}")
        res_types = tuple(dict.fromkeys(names))
    else:
        res_types = ()
    q = SearchQuery(res_types)
    if res_type is None and types_raw:
        q.used.extend(("_type", v) for v in types_raw)
    # system-level search without _type: only the common Resource parameters apply
    scope = res_types or ("Resource",)
    for name, raw in params:
        base, _, modifier = name.partition(":")
        if "\x00" in name or "\x00" in raw:
            raise _bad(name.replace("\x00", "\\0"), "contains a NUL character")
        if name == "_type":
            continue
        if base in FORMAT_PARAMS:
            continue  # the links carry them (api/http.body_response)
        if raw == "":
            _empty(q, strict, name)
            continue
        if name == CURSOR:
            q.cursor = paging.decode(raw, CURSOR)
            q.cursor_raw = raw
            continue
        if base == "_count":
            q.count = paging.parse_count(raw)
        elif base == "_sort":
            q.sort = _parse_sort(res_types, raw, q, strict)
            if not q.sort:
                continue  # every key ignored (reported): the self link shows what was used
            raw = ",".join(("-" if key.descending else "") + key.code for key in q.sort)
        elif base in ("_include", "_revinclude"):
            _parse_include(q, modifier or None, raw, base == "_revinclude", strict)
        elif base == "_total":
            if raw not in TOTAL_MODES:
                raise _bad("_total", f"'{raw}' is not one of {', '.join(TOTAL_MODES)}")
            q.total = raw
        elif base == "_summary":
            if raw not in SUMMARY_MODES:
                raise _bad("_summary", f"'{raw}' is not one of {', '.join(SUMMARY_MODES)}")
            q.summary = raw
        elif base == "_elements":
            q.elements = element_names(raw)
        else:
            try:
                crit = _common_criterion(name, raw) if scope == ("Resource",) else _criterion(res_types, name, raw, name)
            except _Unsupported as e:
                _report(q, strict, e.message)
                continue
            q.criteria.append(crit)
            if sum(_depth(c) for c in q.criteria) > MAX_CRITERIA:
                raise _too_costly(f"more than {MAX_CRITERIA} search criteria (chains and _has count per level)")
            if _depth(crit) > MAX_CHAIN_DEPTH:
                raise _too_costly(f"'{name}': chains and _has may nest at most {MAX_CHAIN_DEPTH} levels")
        q.used.append((name, raw))
    if len(q.sort) > MAX_SORT_KEYS:
        raise _too_costly(f"at most {MAX_SORT_KEYS} _sort keys are allowed")
    if len(q.includes) > MAX_INCLUDES:
        raise _too_costly(f"at most {MAX_INCLUDES} _include/_revinclude values are allowed")
    return q


def _depth(c: Criterion) -> int:
    inner = c.chain or c.has
    return 1 + (_depth(inner) if inner is not None else 0)


def _common_criterion(name: str, raw: str) -> Criterion:
    """System-level search without _type: only Resource-level parameters."""
    code = name.partition(":")[0]
    if code not in COMMON_PARAMS:
        raise _Unsupported(f"'{code}' cannot be used in a search across all types without _type")
    # Patient carries every Resource-level parameter with the same definition
    crit = _criterion(("Patient",), name, raw, name)
    crit.res_types = ()
    return crit
