"""Page tokens and ``_count``: one format and one parser for every paged Bundle.

Searches, history, ``$everything`` and the AuditEvent search all page by keyset: a token
carries the sort-key values and the row key (``pk``) of the row the page ends at, plus a
direction, as URL-safe base64 of a small JSON object. Each caller checks that the keys fit
its own ordering (:func:`decode_ints` for the integer keys most of them use).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import orjson

from fhir_server.errors import FhirError

#: the largest magnitude a key may have (microsecond times and row keys are far below it)
_BIG = 2**62


@dataclass(frozen=True, slots=True)
class PageToken:
    #: the sort-key values of the row the page ended at
    keys: list[Any]
    pk: int
    #: what the token continues: "n" (next page, after the row), "p" (previous page), or a
    #: caller's own ordering flag
    direction: str


def _invalid(param: str) -> FhirError:
    return FhirError.of(400, "invalid", f"{param}: not a page token issued by this server for this request")


def encode(keys: list[Any], pk: int, direction: str = "n") -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"k": keys, "pk": pk, "d": direction})).decode().rstrip("=")


def decode(raw: str, param: str, directions: tuple[str, ...] = ("n", "p")) -> PageToken:
    """The token in ``raw`` (the value of parameter ``param``); 400 for anything else."""
    try:
        data = orjson.loads(base64.urlsafe_b64decode(raw.encode() + b"=" * (-len(raw) % 4)))
    except (ValueError, orjson.JSONDecodeError, UnicodeEncodeError):
        raise _invalid(param) from None
    if not isinstance(data, dict) or not isinstance(data.get("k"), list) or data.get("d") not in directions:
        raise _invalid(param)
    pk = data.get("pk")
    if not isinstance(pk, int) or isinstance(pk, bool) or not -_BIG < pk < _BIG:
        raise _invalid(param)
    return PageToken(data["k"], pk, data["d"])


def decode_ints(raw: str, param: str, keys: int, directions: tuple[str, ...] = ("n", "p")) -> PageToken:
    """A token whose ``keys`` sort keys are all integers (times in microseconds)."""
    token = decode(raw, param, directions)
    if len(token.keys) != keys or not all(isinstance(k, int) and not isinstance(k, bool) and -_BIG < k < _BIG for k in token.keys):
        raise _invalid(param)
    return token


def parse_count(raw: str, max_count: int | None = None, param: str = "_count") -> int:
    """A page size: a non-negative integer below 10^9 (400 otherwise), capped at ``max_count``."""
    if not raw.isdigit() or len(raw) > 9:
        raise FhirError.of(400, "invalid", f"{param} must be a non-negative integer below 10^9, not '{raw[:40]}'")
    count = int(raw)
    return count if max_count is None else min(count, max_count)
