"""The one place that builds Bundles.

Entries are assembled from stored bytes: a resource body is spliced into the
Bundle as it is, never parsed and re-serialised.
"""

from __future__ import annotations

import itertools
import os
import secrets
from collections.abc import Iterable
from typing import Any

import orjson

from fhir_server.timeutil import now_us, to_instant


def _id_head() -> tuple[str, itertools.count[int]]:
    """A random UUID-v4 head for this process and a counter: its Bundles' ids end in the counter, not
    16 random bytes each (uuid4 costs ~1.3 µs and a getrandom call, on every search, history and
    transaction reply)."""
    h = secrets.token_hex(8)
    return f"{h[:8]}-{h[8:12]}-4{h[12:15]}-{'89ab'[int(h[15], 16) % 4]}", itertools.count(secrets.randbits(8) << 40)


_ID_PREFIX, _ID_COUNTER = _id_head()


def _after_fork() -> None:
    global _ID_PREFIX, _ID_COUNTER
    _ID_PREFIX, _ID_COUNTER = _id_head()


os.register_at_fork(after_in_child=_after_fork)  # forked workers must not repeat the parent's ids


def bundle_id() -> str:
    """A UUID-shaped (version 4, RFC 4122 variant) id: unique within the process by its counter,
    across processes by the prefix's ~60 random bits."""
    n = next(_ID_COUNTER)
    return f"{_ID_PREFIX}{(n >> 48) & 0xFFF:03x}-{n & 0xFFFF_FFFF_FFFF:012x}"


def entry(
    full_url: str | None,
    resource: bytes | None = None,
    *,
    search: dict[str, Any] | None = None,
    request: dict[str, Any] | None = None,
    response: dict[str, Any] | None = None,
) -> bytes:
    parts: list[bytes] = []
    if full_url is not None:
        parts.append(b'"fullUrl":' + orjson.dumps(full_url))
    if resource is not None:
        parts.append(b'"resource":' + resource)
    if search is not None:
        parts.append(b'"search":' + orjson.dumps(search))
    if request is not None:
        parts.append(b'"request":' + orjson.dumps(request))
    if response is not None:
        parts.append(b'"response":' + orjson.dumps(response))
    return b"{" + b",".join(parts) + b"}"


def bundle(
    bundle_type: str,
    entries: Iterable[bytes],
    *,
    total: int | None = None,
    links: list[tuple[str, str]] | None = None,
) -> bytes:
    head: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": bundle_id(),
        "meta": {"lastUpdated": to_instant(now_us())},
        "type": bundle_type,
    }
    if total is not None:
        head["total"] = total
    if links:
        head["link"] = [{"relation": rel, "url": url} for rel, url in links]
    body = b",".join(entries)
    if not body:  # FHIR JSON has no empty arrays: a Bundle without entries has no ``entry``
        return orjson.dumps(head)
    return orjson.dumps(head)[:-1] + b',"entry":[' + body + b"]}"
