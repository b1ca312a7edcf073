"""One entry point per native format, for the server operations and the ``fhir-server map`` CLI.

``to_fhir(kind, native_json)`` maps native JSON to FHIR; ``from_fhir(kind, fhir_json)`` maps FHIR (one
resource, a list, or a Bundle, e.g. the output of ``to_fhir`` or a search result) back to the native
shape, picking the resources it needs and following references between them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fhir_server.errors import FhirError
from mappings.bpjs_peserta import bpjs_peserta_to_fhir, fhir_to_bpjs_peserta
from mappings.dukcapil import dukcapil_to_fhir, patient_to_dukcapil_envelope
from mappings.pcare import (
    encounter_to_pcare_kunjungan,
    encounter_to_pcare_pendaftaran,
    kunjungan_to_fhir,
    pcare_to_fhir,
    pendaftaran_to_fhir,
)
from mappings.result import MappingResult
from mappings.sep import encounter_to_sep_request, encounter_to_sep_response, sep_to_fhir

FORWARD: dict[str, Callable[[Any], MappingResult]] = {
    "dukcapil": dukcapil_to_fhir,
    "bpjs-peserta": bpjs_peserta_to_fhir,
    "sep": sep_to_fhir,
    "pcare": pcare_to_fhir,
    "pcare-pendaftaran": pendaftaran_to_fhir,
    "pcare-kunjungan": kunjungan_to_fhir,
}
#: The formats ``from_fhir`` produces; "sep" is the SEP 2.0 insert request, "sep-response" the SEP view.
REVERSE_KINDS = ("dukcapil", "bpjs-peserta", "sep", "sep-response", "pcare-pendaftaran", "pcare-kunjungan")


def to_fhir(kind: str, payload: Any) -> MappingResult:
    """Native JSON of ``kind`` to FHIR resources (see :data:`FORWARD` for the kinds)."""
    try:
        mapper = FORWARD[kind]
    except KeyError:
        raise FhirError.of(400, "not-supported", f"unknown native format '{kind}'") from None
    return mapper(payload)


class _Resources:
    """Resources of a FHIR payload, findable by type and by the references that point at them."""

    def __init__(self, payload: Any) -> None:
        self.items: list[dict[str, Any]] = []
        self.by_ref: dict[str, dict[str, Any]] = {}
        if isinstance(payload, dict) and payload.get("resourceType") == "Bundle":
            for entry in payload.get("entry", []):
                resource = entry.get("resource")
                if isinstance(resource, dict):
                    self._add(resource, entry.get("fullUrl"))
        elif isinstance(payload, dict) and "resourceType" in payload:
            self._add(payload, None)
        elif isinstance(payload, list):
            for item in payload:
                if isinstance(item, dict) and "resourceType" in item:
                    self._add(item, None)
        else:
            raise FhirError.of(400, "structure", "expected a FHIR resource, a list of resources or a Bundle")

    def _add(self, resource: dict[str, Any], full_url: str | None) -> None:
        self.items.append(resource)
        if full_url:
            self.by_ref[full_url] = resource
        if resource.get("id"):
            self.by_ref[f"{resource['resourceType']}/{resource['id']}"] = resource

    def of_type(self, resource_type: str) -> list[dict[str, Any]]:
        return [r for r in self.items if r["resourceType"] == resource_type]

    def one(self, resource_type: str) -> dict[str, Any]:
        found = self.of_type(resource_type)
        if not found:
            raise FhirError.of(422, "required", f"a {resource_type} resource is required", resource_type)
        return found[0]

    def resolve(self, reference: dict[str, Any] | None, resource_type: str) -> dict[str, Any] | None:
        ref = (reference or {}).get("reference")
        if ref and ref in self.by_ref:
            return self.by_ref[ref]
        same = self.of_type(resource_type)
        return same[0] if len(same) == 1 else None

    def linked_to(self, encounter: dict[str, Any], resource_type: str) -> list[dict[str, Any]]:
        """Resources of a type whose ``encounter`` points at this Encounter (all of them if none do)."""
        found = self.of_type(resource_type)
        mine = [r for r in found if self.by_ref.get((r.get("encounter") or {}).get("reference", "")) is encounter]
        return mine or found


def from_fhir(kind: str, payload: Any) -> dict[str, Any]:
    """FHIR resources to the native shape of ``kind`` (one of :data:`REVERSE_KINDS`)."""
    res = _Resources(payload)
    if kind == "dukcapil":
        res.one("Patient")
        return patient_to_dukcapil_envelope(res.of_type("Patient"))
    if kind == "bpjs-peserta":
        coverage = res.one("Coverage")
        return fhir_to_bpjs_peserta(coverage, res.resolve(coverage.get("beneficiary"), "Patient"))
    if kind in ("sep", "sep-response"):
        encounter = res.one("Encounter")
        diagnoses = sorted(encounter.get("diagnosis", []), key=lambda d: d.get("rank", 99))
        condition = res.resolve(diagnoses[0].get("condition") if diagnoses else None, "Condition")
        if kind == "sep":
            return encounter_to_sep_request(encounter, condition)
        return encounter_to_sep_response(encounter, condition)
    if kind == "pcare-pendaftaran":
        encounter = res.one("Encounter")
        return encounter_to_pcare_pendaftaran(encounter, res.linked_to(encounter, "Observation"))
    if kind == "pcare-kunjungan":
        encounter = res.one("Encounter")
        return encounter_to_pcare_kunjungan(encounter, res.linked_to(encounter, "Condition"), res.linked_to(encounter, "Observation"))
    raise FhirError.of(400, "not-supported", f"unknown native format '{kind}'")
