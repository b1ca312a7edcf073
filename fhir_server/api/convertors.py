"""Path convertors: a resource type or id segment matches only what FHIR allows.

``_history``, ``_search`` and ``$operation`` segments can then never be taken
for an id, so route order stops mattering and the hot routes can come first.
"""

from __future__ import annotations

from starlette.convertors import CONVERTOR_TYPES, Convertor, register_url_convertor


class FhirTypeConvertor(Convertor[str]):
    regex = "[A-Z][A-Za-z]{1,63}"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


class FhirIdConvertor(Convertor[str]):
    # anything but a ``_keyword`` or ``$operation`` segment; the id rules themselves are
    # checked by the service so that a bad id answers 400 with a clear message
    regex = r"[^/_$][^/]*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


def register_fhir_convertors() -> None:
    if "fhir_type" not in CONVERTOR_TYPES:
        register_url_convertor("fhir_type", FhirTypeConvertor())
        register_url_convertor("fhir_id", FhirIdConvertor())
