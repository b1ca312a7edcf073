"""Building and reading FHIR ``Parameters`` resources (plain dicts)."""

from __future__ import annotations

from typing import Any

#: Python value type -> the ``value[x]`` suffix used when none is given explicitly.
_DEFAULT_TYPES: dict[type, str] = {bool: "Boolean", int: "Integer", float: "Decimal", str: "String"}


def param(name: str, value: Any = None, value_type: str | None = None, part: list[dict] | None = None) -> dict:
    """One ``Parameters.parameter`` entry: a typed value, or ``part`` for a nested parameter."""
    out: dict[str, Any] = {"name": name}
    if part is not None:
        out["part"] = part
        return out
    kind = value_type or _DEFAULT_TYPES[type(value)]
    out[f"value{kind}"] = value
    return out


def parameters(*entries: dict | None) -> dict:
    """A Parameters resource from entries, skipping ``None`` (optional outputs)."""
    return {"resourceType": "Parameters", "parameter": [e for e in entries if e is not None]}


def property_value(value: Any, value_type: str | None) -> tuple[str, Any]:
    """Infer the ``value[x]`` type of a CodeSystem property value when the definition does not say."""
    if value_type:
        return value_type, value
    if isinstance(value, bool):
        return "Boolean", value
    if isinstance(value, int):
        return "Integer", value
    if isinstance(value, dict):
        return "Coding", value
    return "Code", value


def get(params: dict, name: str) -> Any:
    """First value of parameter ``name`` (whatever its ``value[x]``), or ``None``; handy in tests and callers."""
    for p in params.get("parameter", []):
        if p.get("name") == name:
            if "part" in p:
                return p["part"]
            for key, value in p.items():
                if key.startswith("value"):
                    return value
    return None


def get_all(params: dict, name: str) -> list[dict]:
    """Every parameter entry named ``name``."""
    return [p for p in params.get("parameter", []) if p.get("name") == name]
