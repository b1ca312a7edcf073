"""Limits on any JSON a client sends, checked before validation or mapping.

Deep nesting and huge element counts cost memory and CPU long before they are
"invalid FHIR"; control characters (NUL above all) break storage and XML
output. Each limit answers a clear 4xx OperationOutcome.

The walk runs on every write, so it keeps no paths: only when a limit is broken
does a second walk find where, and the issue names that place as FHIRPath
(structure.expression_at) when the body is a resource.
"""

from __future__ import annotations

import re
from typing import Any

from fhir_server.errors import FhirError
from fhir_server.model.structure import expression_at

# C0 controls other than tab, LF and CR: not allowed in FHIR strings (nor in XML)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")

_TOO_MANY, _TOO_DEEP, _CONTROL_KEY, _CONTROL_STRING = range(4)
Loc = tuple[str | int, ...]


# a control character in a JSON string can only be written escaped (\u0000-\u001f, \b, \f);
# an escaped backslash before b/f matches too, which only sends the body to the full walk
_ESCAPED_CONTROL = re.compile(rb"\\(?:u00[01][0-9A-Fa-f]|[bf])")


def check_json(value: Any, *, max_depth: int, max_elements: int, raw: bytes | None = None) -> None:
    """Raise FhirError (400 depth / control characters, 413 too many elements) or return.

    ``raw``: the JSON text ``value`` was parsed from. When its size rules out too many values
    (each takes two bytes or more) and it escapes no control character, only the nesting of
    objects and arrays is walked, not every value (about a tenth of a large Bundle's cost).
    """
    plain = raw is not None and len(raw) < 2 * max_elements and not _ESCAPED_CONTROL.search(raw)
    if plain and not _too_deep(value, max_depth):
        return
    problem = _walk(value, max_depth, max_elements, None)
    if problem is None:
        return
    locs: list[Loc] = []
    _walk(value, max_depth, max_elements, locs)
    where, at = _where(value, locs[0]) if locs else (None, "")
    if problem == _TOO_MANY:
        raise FhirError.of(413, "too-costly", f"The JSON has more than {max_elements} values (limit FHIR_MAX_JSON_ELEMENTS)")
    if problem == _TOO_DEEP:
        raise FhirError.of(400, "too-costly", f"The JSON is nested deeper than {max_depth} levels (limit FHIR_MAX_JSON_DEPTH){at}", where)
    if problem == _CONTROL_KEY:
        raise FhirError.of(400, "invalid", f"A JSON key contains a control character{at}", where)
    raise FhirError.of(400, "invalid", f"A string contains a control character (such as NUL); FHIR strings may not{at}", where)


def _too_deep(value: Any, max_depth: int) -> bool:
    """Whether any value lies deeper than ``max_depth`` (the root is at depth 1), visiting only
    objects and arrays: the children of one at depth ``max_depth`` or more are too deep."""
    if max_depth < 1:
        return True
    # level by level, in plain loops (no tuple per node, no generator): 15 -> ~5 µs a Synthea resource
    level: list[Any] = [value] if type(value) is dict or type(value) is list else []
    depth = 1
    while level:
        if depth >= max_depth:
            return any(level)  # a non-empty object or array here has children too deep
        below: list[Any] = []
        push = below.append
        for node in level:
            for child in node.values() if type(node) is dict else node:
                kind = type(child)
                if kind is dict or kind is list:
                    push(child)
        level, depth = below, depth + 1
    return False


def _walk(value: Any, max_depth: int, max_elements: int, found: list[Loc] | None) -> int | None:
    """The first limit broken, in a fixed order; with ``found``, also where (appended to it)."""
    count = 0
    # (node, depth, location): the location is only built when ``found`` asks for it
    stack: list[tuple[Any, int, Loc]] = [(value, 1, ())]
    while stack:
        node, depth, loc = stack.pop()
        count += 1
        if count > max_elements:
            return _TOO_MANY
        if depth > max_depth:
            if found is not None:
                found.append(loc)
            return _TOO_DEEP
        if isinstance(node, dict):
            for key, child in node.items():
                if _CONTROL.search(key):
                    if found is not None:
                        found.append(loc)
                    return _CONTROL_KEY
                stack.append((child, depth + 1, (*loc, key) if found is not None else loc))
        elif isinstance(node, list):
            if found is None:
                stack.extend((child, depth + 1, loc) for child in node)
            else:
                stack.extend((child, depth + 1, (*loc, i)) for i, child in enumerate(node))
        elif isinstance(node, str) and _CONTROL.search(node):
            if found is not None:
                found.append(loc)
            return _CONTROL_STRING
    return None


def _where(value: Any, loc: Loc) -> tuple[str | None, str]:
    """(FHIRPath of the place, "") in a resource; for other JSON (a JSON Patch) no
    expression, and the JSON location for the diagnostics instead."""
    expression = expression_at(value, loc)
    if expression is not None:
        return expression, ""
    path = "".join(f"[{p}]" if type(p) is int else f".{p}" for p in loc).lstrip(".")
    return None, f" (at {path})" if path else ""
