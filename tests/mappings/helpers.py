"""Shared helpers for the mapping tests (pure: no app, no database)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fhir.resources.R4B import get_fhir_model_class

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def assert_valid(resources: list[dict[str, Any]]) -> None:
    """Each resource passes the fhir.resources R4B model and the server's own validation."""
    from fhir_server.model.validate import validate_resource

    for resource in resources:
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
        errors = [i for i in validate_resource(resource) if i.severity in ("error", "fatal")]
        assert errors == [], (resource["resourceType"], errors)
