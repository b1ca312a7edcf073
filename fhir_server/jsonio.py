"""JSON in and out of the server, without losing what the client sent.

orjson is fast but turns ``1.50`` into ``1.5`` and integers beyond 64 bits into
floats. FHIR decimals carry their precision, so a body that holds such
numbers is parsed and written with simplejson's exact ``Decimal`` handling
instead. Everything else takes the orjson fast path.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import orjson
import simplejson

# A number that orjson would not give back unchanged (its float's shortest form differs from
# the text): a fraction of two or more digits ending in 0 (``1.50``), an exponent, an integer
# of 19+ digits, a fraction below 1e-4 (``0.00001`` comes back as ``1e-05``), a fraction of 16 or
# more digits in all (beyond a float's 15 exact ones), or -0 (the integer 0 to orjson). ``1.0``
# is not one (Synthea writes every dose so: a quarter of its Bundles had taken the exact path
# for it). Matched only outside strings is not worth the cost: a false positive merely selects
# the exact (slower) path.
_LOSSY_NUMBER = re.compile(
    rb"[:\[,]\s*(?:-?\d+\.\d+0|-?\d+(?:\.\d+)?[eE][-+]?\d+|-?\d{19,}|-?0\.0{4,}\d*|-?(?=[\d.]{17})\d+\.\d+|-0)\s*[,\]}]"
)


#: where an integer ``-0`` may be (the one lossy number orjson gives no float for); a literal
#: first, so it is found as fast as a substring, unlike ``_LOSSY_NUMBER`` (every date has a "-0")
_NEGATIVE_ZERO = re.compile(rb"-0\s*[,\]}]")


class JsonError(ValueError):
    """The bytes are not a JSON document we accept."""


class DuplicateKey(JsonError):
    """An object of the JSON names the same property twice (``loc``: the object's JSON location)."""

    def __init__(self, key: str, loc: tuple[str | int, ...], value: Any) -> None:
        at = "".join(f"[{p}]" if type(p) is int else f".{p}" for p in loc).lstrip(".")
        super().__init__(
            f"The property '{key}' appears more than once in the object {('at ' + at) if at else 'at the root'}; "
            "a JSON object names each property once (FHIR JSON, json.html)"
        )
        self.key, self.loc, self.value = key, loc, value


class ExactDecimal(Decimal):
    """A Decimal that is written back exactly as it was read (``1e3`` stays ``1e3``)."""

    _text: str

    def __new__(cls, text: str) -> ExactDecimal:
        obj = super().__new__(cls, text)
        obj._text = text
        return obj

    def __str__(self) -> str:
        return self._text

    __repr__ = __str__


NEGATIVE_ZERO = ExactDecimal("-0")


def _exact_int(text: str) -> int | ExactDecimal:
    """An integer of the exact path; ``-0`` (FHIR's integer and decimal grammars allow it) keeps
    its text as an :class:`ExactDecimal` (``is_negative_zero``), as ``-0.0`` does."""
    return NEGATIVE_ZERO if text == "-0" else int(text)


def is_negative_zero(value: Any) -> bool:
    """Whether ``value`` is a JSON ``-0`` as :func:`loads` reads it (an integer to FHIR)."""
    return isinstance(value, ExactDecimal) and value._text == "-0"


def loads(raw: bytes) -> Any:
    """Parse JSON bytes; raise :class:`JsonError` with a readable reason."""
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    return _loads(raw)[0]


def _loads(raw: bytes) -> tuple[Any, int]:
    """``loads`` and the number of properties its objects hold (``_census``; -1 when orjson
    refused the text and only the exact path parsed it).

    orjson first: it loses nothing unless the value holds a float (a fraction, an exponent, an
    integer beyond 64 bits) or the text a ``-0``, and only then is the text searched for a
    number it would change (``_LOSSY_NUMBER``, costlier than the parse itself: scanning every
    Bundle with it took 12 µs a Synthea resource, the walk that looks for floats ~5)."""
    try:
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            if not _LOSSY_NUMBER.search(raw):
                raise
            return loads_exact(raw), -1  # e.g. 1e400, which orjson refuses as infinity
        properties, floats = _census(value)
        if (floats or _NEGATIVE_ZERO.search(raw)) and _LOSSY_NUMBER.search(raw):
            return loads_exact(raw), properties  # the same names: both parsers keep a repeated one once
        return value, properties
    except UnicodeDecodeError as exc:
        raise JsonError(f"Body is not valid UTF-8: {exc.reason} at byte {exc.start}") from None
    except (orjson.JSONDecodeError, simplejson.JSONDecodeError) as exc:
        if "not valid UTF-8" in str(exc):  # orjson's words for a UTF-16 or Latin-1 body
            raise JsonError("Body is not valid UTF-8 (FHIR JSON is UTF-8, json.html)") from None
        raise JsonError(f"Malformed JSON: {exc}") from None
    except RecursionError:
        raise JsonError("JSON nesting is too deep") from None
    except ValueError as exc:  # e.g. an integer of thousands of digits
        raise JsonError(f"Unacceptable JSON value: {str(exc)[:200]}") from None


def loads_exact(raw: bytes) -> Any:
    """The exact path: decimals as :class:`ExactDecimal`, integers of any length."""
    return simplejson.loads(raw.decode("utf-8"), parse_float=ExactDecimal, parse_int=_exact_int)


def loads_client(raw: bytes) -> Any:
    """``loads`` for what a client sent (REST bodies, Bundle entries, Binary patches, the
    console, ``fhir-server import`` and ``map``): also :class:`DuplicateKey` when an object
    repeats a property name, which FHIR JSON does not allow and orjson silently resolves to the
    last value.

    Cheap on every body: each property name in the text ends with ``"`` then ``:`` (blanks
    between allowed), so counting those marks gives an upper bound on the names written; when it
    equals the number of properties the parse kept, nothing was dropped. Only a mismatch (a
    duplicate, or such a mark inside a string value) pays for the exact parse below.
    """
    value, properties = _loads(raw.removeprefix(b"\xef\xbb\xbf"))
    marks = raw.count(b'":') + len(_SPACED_MARK.findall(raw))
    if marks != (properties if properties >= 0 else _census(value)[0]):
        _find_duplicate(raw, value)
    return value


_SPACED_MARK = re.compile(rb'"[ \t\r\n]+:')


def _census(value: Any) -> tuple[int, bool]:
    """How many properties the objects of ``value`` hold, all depths, and whether it holds a
    float (only objects and arrays are pushed; a plain loop: twice as fast as generators in
    ``extend``, 3.2 against 6.9 µs for an average Synthea resource)."""
    count = 0
    floats = type(value) is float
    stack: list[Any] = [value] if type(value) is dict or type(value) is list else []
    pop, push = stack.pop, stack.append
    while stack:
        node = pop()
        if type(node) is dict:
            count += len(node)
            node = node.values()
        for child in node:
            kind = type(child)
            if kind is dict or kind is list:
                push(child)
            elif kind is float:
                floats = True
    return count, floats


class _Repeated(dict[str, Any]):
    """An object whose text repeats ``key`` (built by the exact parse)."""

    key: str


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    repeated = _Repeated(obj)
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            repeated.key = key
            break
        seen.add(key)
    return repeated


def _find_duplicate(raw: bytes, value: Any) -> None:
    """Raise DuplicateKey for the first object (document order) that repeats a property."""
    text = raw[3:] if raw.startswith(b"\xef\xbb\xbf") else raw
    try:
        # numbers as text: only the names matter here, and a huge integer must not fail
        doc = json.loads(text, object_pairs_hook=_pairs, parse_int=str, parse_float=str, parse_constant=str)
    except RecursionError:
        return  # deeper than Python's parser goes: FHIR_MAX_JSON_DEPTH refuses such a body
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(doc, ())]
    while stack:
        node, loc = stack.pop()
        if isinstance(node, _Repeated):
            raise DuplicateKey(node.key, loc, value)
        items = list(node.items()) if isinstance(node, dict) else list(enumerate(node)) if isinstance(node, list) else []
        stack.extend(((child, (*loc, key)) for key, child in reversed(items)))


def dumps(value: Any, *, pretty: bool = False) -> bytes:
    """Serialise compactly (or indented); Decimals are written exactly."""
    try:
        return orjson.dumps(value, option=orjson.OPT_INDENT_2 if pretty else 0)
    except TypeError:
        pass  # Decimals or integers beyond 64 bits: take the exact path
    text = simplejson.dumps(
        value,
        use_decimal=True,
        ensure_ascii=False,
        indent=2 if pretty else None,
        separators=None if pretty else (",", ":"),
    )
    return text.encode("utf-8")
