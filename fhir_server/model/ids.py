"""Logical ids: the R4 ``id`` datatype, ``[A-Za-z0-9\\-\\.]{1,64}``."""

from __future__ import annotations

import re

from fhir_server.errors import FhirError

ID_PATTERN = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def is_valid_id(value: str) -> bool:
    return ID_PATTERN.fullmatch(value) is not None


def check_id(value: str) -> None:
    """FhirError 400 when ``value`` is not a valid logical id."""
    if not is_valid_id(value):
        raise FhirError.of(400, "invalid", f"'{value[:80]}' is not a valid FHIR id ([A-Za-z0-9-.]{{1,64}})")
