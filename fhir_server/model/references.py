"""Every ``Reference.reference`` in a resource: the one walk that Bundle reference rewriting,
conditional-reference discovery and the import's ordering all use."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def reference_holders(node: Any) -> Iterator[dict[str, Any]]:
    """Each object in ``node`` whose ``reference`` is a string, in document order. The caller may
    replace ``holder["reference"]`` before taking the next one."""
    stack: list[Any] = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if isinstance(item.get("reference"), str):
                yield item
            # children pushed in reverse so they pop in document order; leaves (mostly strings)
            # are never pushed
            stack.extend(reversed([v for v in item.values() if isinstance(v, (dict, list))]))
        elif isinstance(item, list):
            stack.extend(reversed([v for v in item if isinstance(v, (dict, list))]))
