"""Reading Bundles in tests: a Bundle with no entry has no ``entry`` element (FHIR JSON allows no
empty array), so a test that may see an empty Bundle reads its entries through ``entries``."""

from __future__ import annotations

from typing import Any


def entries(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    """The Bundle's entries ([] when it has none)."""
    return bundle.get("entry", [])


def empty_arrays(value: Any, path: str = "") -> list[str]:
    """The paths of every empty array in ``value`` (FHIR JSON allows none)."""
    if isinstance(value, list):
        if not value:
            return [path or "$"]
        return [p for i, item in enumerate(value) for p in empty_arrays(item, f"{path}[{i}]")]
    if isinstance(value, dict):
        return [p for key, item in value.items() for p in empty_arrays(item, f"{path}.{key}" if path else key)]
    return []
