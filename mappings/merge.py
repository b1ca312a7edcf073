"""Merging a mapped resource into the stored one, for imports that meet an existing record.

A Patient can arrive from Dukcapil (the civil registry: authoritative for demographics) and from BPJS
(adds the card number and phone, and may be older). A plain conditional update would let whichever
came last erase the other's identifiers and extensions; :func:`merge` keeps both. It is idempotent:
merging the same incoming resource twice gives the same result as once, so repeated imports change
nothing.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Hashable
from typing import Any

_KEEP = ("id", "meta", "text")


def _union(
    old: list[dict[str, Any]], new: list[dict[str, Any]], key: Callable[[dict[str, Any]], Hashable], incoming_wins: bool
) -> list[dict[str, Any]]:
    out = [copy.deepcopy(x) for x in old]
    index = {key(x): i for i, x in enumerate(out)}
    for item in new:
        k = key(item)
        if k in index:
            if incoming_wins:
                out[index[k]] = copy.deepcopy(item)
        else:
            index[k] = len(out)
            out.append(copy.deepcopy(item))
    return out


def merge(existing: dict[str, Any] | None, incoming: dict[str, Any], *, incoming_wins: bool) -> dict[str, Any]:
    """``incoming`` merged into ``existing``.

    Identifiers are matched by system, extensions by url, telecom by system and value: matches are
    replaced only when ``incoming_wins``, the rest are added. Other elements are taken from
    ``incoming`` when it wins, otherwise only where ``existing`` has none. ``id``/``meta``/``text`` of
    the stored resource are kept (profiles are unioned).
    """
    if existing is None:
        return copy.deepcopy(incoming)
    if existing.get("resourceType") != incoming.get("resourceType"):
        raise ValueError("cannot merge resources of different types")
    out = copy.deepcopy(existing)
    for key, value in incoming.items():
        if key in _KEEP:
            continue
        if key == "identifier":
            out[key] = _union(out.get(key, []), value, lambda i: i.get("system"), incoming_wins)
        elif key == "extension":
            out[key] = _union(out.get(key, []), value, lambda e: e.get("url"), incoming_wins)
        elif key == "telecom":
            out[key] = _union(out.get(key, []), value, lambda t: (t.get("system"), t.get("value")), incoming_wins)
        elif incoming_wins or key not in out:
            out[key] = copy.deepcopy(value)
    profiles = list((existing.get("meta") or {}).get("profile", []))
    for profile in (incoming.get("meta") or {}).get("profile", []):
        if profile not in profiles:
            profiles.append(profile)
    if profiles:
        out.setdefault("meta", {})["profile"] = profiles
    return out
