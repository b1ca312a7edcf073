"""Limits on any JSON a client sends, checked before validation or mapping.

Deep nesting and huge element counts cost memory and CPU long before they are
"invalid FHIR"; control characters (NUL above all) break storage and XML
output. Each limit answers a clear 4xx OperationOutcome.
"""

from __future__ import annotations

import re
from typing import Any

from fhir_server.errors import FhirError

# C0 controls other than tab, LF and CR: not allowed in FHIR strings (nor in XML)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def check_json(value: Any, *, max_depth: int, max_elements: int, root: str = "") -> None:
    """Raise FhirError (400 depth / control characters, 413 too many elements) or return."""
    count = 0
    stack: list[tuple[Any, int, str]] = [(value, 1, root)]
    while stack:
        node, depth, path = stack.pop()
        count += 1
        if count > max_elements:
            raise FhirError.of(413, "too-costly", f"The JSON has more than {max_elements} values (limit FHIR_MAX_JSON_ELEMENTS)")
        if depth > max_depth:
            raise FhirError.of(
                400, "too-costly", f"The JSON is nested deeper than {max_depth} levels (limit FHIR_MAX_JSON_DEPTH)", path or None
            )
        if isinstance(node, dict):
            for key, child in node.items():
                if _CONTROL.search(key):
                    raise FhirError.of(400, "invalid", "A JSON key contains a control character", path or None)
                stack.append((child, depth + 1, f"{path}.{key}" if path else key))
        elif isinstance(node, list):
            stack.extend((child, depth + 1, f"{path}[{i}]") for i, child in enumerate(node))
        elif isinstance(node, str) and _CONTROL.search(node):
            raise FhirError.of(400, "invalid", "A string contains a control character (such as NUL); FHIR strings may not", path or None)
