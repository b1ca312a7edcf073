"""FHIRPath Patch bodies for tests (R4 fhirpatch.html): a Parameters resource, one ``operation``
parameter per operation, each operation a list of parts."""

from __future__ import annotations

from typing import Any


def fhirpath_patch(*operations: list[dict[str, Any]]) -> dict[str, Any]:
    """The Parameters resource of ``operations`` (each a list of parts: type, path, name, value)."""
    return {"resourceType": "Parameters", "parameter": [{"name": "operation", "part": list(op)} for op in operations]}


def replace_code(path: str, code: str) -> dict[str, Any]:
    """A patch of one ``replace`` of the element at ``path`` with the code ``code``."""
    return fhirpath_patch(
        [{"name": "type", "valueCode": "replace"}, {"name": "path", "valueString": path}, {"name": "value", "valueCode": code}]
    )
