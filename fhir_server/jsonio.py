"""JSON in and out of the server, without losing what the client sent.

orjson is fast but turns ``1.50`` into ``1.5`` and integers beyond 64 bits into
floats. FHIR decimals carry their precision, so a body that holds such
numbers is parsed and written with simplejson's exact ``Decimal`` handling
instead. Everything else takes the orjson fast path.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import orjson
import simplejson

# A number that orjson would not give back unchanged: a fraction ending in 0,
# an exponent, or an integer of 19+ digits. Matched only outside strings is
# not worth the cost: a false positive merely selects the exact (slower) path.
_LOSSY_NUMBER = re.compile(rb"[:\[,]\s*-?\d+(?:\.\d*0|(?:\.\d+)?[eE][-+]?\d+|\d{18,})\s*[,\]}]")


class JsonError(ValueError):
    """The bytes are not a JSON document we accept."""


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


def loads(raw: bytes) -> Any:
    """Parse JSON bytes; raise :class:`JsonError` with a readable reason."""
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        if _LOSSY_NUMBER.search(raw):
            return simplejson.loads(raw.decode("utf-8"), parse_float=ExactDecimal)
        return orjson.loads(raw)
    except UnicodeDecodeError as exc:
        raise JsonError(f"Body is not valid UTF-8: {exc.reason} at byte {exc.start}") from None
    except (orjson.JSONDecodeError, simplejson.JSONDecodeError) as exc:
        raise JsonError(f"Malformed JSON: {exc}") from None
    except RecursionError:
        raise JsonError("JSON nesting is too deep") from None
    except ValueError as exc:  # e.g. an integer of thousands of digits
        raise JsonError(f"Unacceptable JSON value: {str(exc)[:200]}") from None


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
