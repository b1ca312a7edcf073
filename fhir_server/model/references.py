"""Every ``Reference.reference`` in a resource: the one walk that Bundle reference rewriting,
conditional-reference discovery and the import's ordering all use."""

from __future__ import annotations

from typing import Any


def reference_holders(node: Any) -> list[dict[str, Any]]:
    """Each object in ``node`` whose ``reference`` is a string, in document order (collected
    first, so the caller may replace ``holder["reference"]`` as it goes)."""
    found: list[dict[str, Any]] = []
    _collect(node, found)
    return found


def _collect(node: Any, found: list[dict[str, Any]]) -> None:
    # a plain recursion over items(): measured on the Synthea sample, 3x cheaper than a
    # generator over an explicit stack (15 vs 50 µs a resource), and this runs on every write
    # of a Bundle, twice; leaves (mostly strings) are never visited
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                found.append(node)
            elif isinstance(value, (dict, list)):
                _collect(value, found)
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, (dict, list)):
                _collect(item, found)
