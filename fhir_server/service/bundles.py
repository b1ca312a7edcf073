"""The one place that builds Bundles.

Entries are assembled from stored bytes: a resource body is spliced into the
Bundle as it is, never parsed and re-serialised.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

import orjson

from fhir_server.timeutil import now_us, to_instant


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
        "id": str(uuid.uuid4()),
        "meta": {"lastUpdated": to_instant(now_us())},
        "type": bundle_type,
    }
    if total is not None:
        head["total"] = total
    if links:
        head["link"] = [{"relation": rel, "url": url} for rel, url in links]
    return orjson.dumps(head)[:-1] + b',"entry":[' + b",".join(entries) + b"]}"
