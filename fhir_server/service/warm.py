"""What a server process builds before its first request, rather than inside one.

The structure checker's tables (~35-60 ms) and, for each type, its R4B model classes and index
extraction plan (~3-15 ms a type) are built on first use: the first write after a restart paid
them, and in the Synthea ingest each worker paid ~180 ms of them inside its first Bundles.
Built at start-up they are also frozen out of the garbage collector's full passes with the rest
of what start-up made (app.py). Only the types written most: all 145 would cost each worker
over a second and ~65 MB.
"""

from __future__ import annotations

from fhir_server.model import structure, validate
from fhir_server.search import extract

#: a patient's record as a Puskesmas or SIMRS writes it (and SATUSEHAT receives it), BPJS
#: coverage and claims, the directory, and the AuditEvents this server writes itself
COMMON_TYPES = (
    "Patient",
    "Encounter",
    "Condition",
    "Observation",
    "Procedure",
    "AllergyIntolerance",
    "Medication",
    "MedicationRequest",
    "MedicationDispense",
    "MedicationAdministration",
    "Immunization",
    "ServiceRequest",
    "Specimen",
    "DiagnosticReport",
    "ImagingStudy",
    "DocumentReference",
    "Composition",
    "ClinicalImpression",
    "CarePlan",
    "CareTeam",
    "EpisodeOfCare",
    "Coverage",
    "Claim",
    "ExplanationOfBenefit",
    "Organization",
    "Location",
    "Practitioner",
    "PractitionerRole",
    "Device",
    "Provenance",
    "AuditEvent",
)


def warm_up(types: tuple[str, ...] = COMMON_TYPES) -> None:
    structure.warm_up()
    for res_type in types:
        validate.warm_up(res_type)
        extract.warm_up(res_type)
