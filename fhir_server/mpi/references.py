"""Rewriting references from one Patient to another inside a resource (pure): what ``$merge``
does to every resource that points at the merged-away record, and ``$unmerge`` undoes."""

from __future__ import annotations

import re
from typing import Any

_HISTORY = re.compile(r"/_history/[^/]+$")


def points_at(reference: str, res_type: str, res_id: str, base: str) -> bool:
    """Whether a ``Reference.reference`` names ``res_type/res_id`` (relative, absolute under our
    own ``base``, with or without a version)."""
    plain = _HISTORY.sub("", reference)
    if base and plain.startswith(base.rstrip("/") + "/"):
        plain = plain[len(base.rstrip("/")) + 1 :]
    return plain == f"{res_type}/{res_id}"


def rewrite(resource: Any, res_type: str, old_id: str, new_id: str, base: str) -> int:
    """Point every reference to ``res_type/old_id`` in ``resource`` (in place: extensions and
    contained resources included) at ``res_type/new_id``, keeping its form (relative or absolute;
    a version is dropped, since the new record's versions are unrelated). Returns how many."""
    count = 0
    stack = [resource]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            ref = node.get("reference")
            if isinstance(ref, str) and points_at(ref, res_type, old_id, base):
                absolute = base and ref.startswith(base.rstrip("/") + "/")
                node["reference"] = f"{base.rstrip('/')}/{res_type}/{new_id}" if absolute else f"{res_type}/{new_id}"
                count += 1
            stack.extend(v for v in node.values() if isinstance(v, (dict, list)))
        elif isinstance(node, list):
            stack.extend(v for v in node if isinstance(v, (dict, list)))
    return count
