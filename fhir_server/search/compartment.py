"""Compartment search: ``GET [base]/[compartment]/[id]/[type]`` and ``.../*`` (R4 http.html#search).

A resource is in the compartment of ``Patient/1`` when one of the reference parameters the
official R4 CompartmentDefinition names for its type points at ``Patient/1`` (``Encounter``:
``patient``; ``Observation``: ``subject`` or ``performer``), or, where the definition says
``{def}`` (an Encounter in its own Encounter compartment), when it is the focal resource itself.
The R4 Patient definition names ``link`` for Patient, so ``Patient/1/Patient`` finds the Patients
that link to Patient 1, not Patient 1 itself (``Patient/1/$everything`` answers it with its members).

The compartment's focal resource need not exist: ``Patient/1/Encounter`` is
``Encounter?patient=Patient/1`` whether or not Patient 1 is stored, as that search is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from ..errors import FhirError
from ..model.ids import check_id
from .parameters import compartments, is_search_type

#: the parameter name a CompartmentDefinition gives for "the focal resource itself"
FOCAL = "{def}"


@dataclass(frozen=True, slots=True)
class Compartment:
    """``Patient/1`` as a compartment: its CompartmentDefinition's code and the focal id."""

    code: str
    focal_id: str

    @property
    def path(self) -> str:
        return f"{self.code}/{self.focal_id}"


@dataclass(frozen=True, slots=True)
class CompartmentPage:
    """One keyset page of a compartment's members (``$everything``): ``members`` maps a type to
    the reference parameters that put it in the compartment; ``since``/``start``/``end`` are
    (lo, hi) microsecond ranges (``start``/``end``: members with a ``date`` value overlapping
    them, and members without one)."""

    compartment: str
    focal_id: str
    members: dict[str, list[str]]
    count: int
    after_pk: int | None = None
    since: tuple[int, int] | None = None
    start: tuple[int, int] | None = None
    end: tuple[int, int] | None = None


class Member(NamedTuple):
    """A compartment member of a ``CompartmentPage``."""

    pk: int
    res_type: str
    res_id: str
    body: bytes


def compartment_codes() -> tuple[str, ...]:
    """The compartments defined by R4 (Device, Encounter, Patient, Practitioner, RelatedPerson)."""
    return tuple(sorted(compartments()))


def is_compartment(code: str) -> bool:
    return code in compartments()


def definition_url(code: str) -> str:
    """The canonical URL of the R4 CompartmentDefinition of ``code`` (CapabilityStatement.rest.compartment)."""
    return f"http://hl7.org/fhir/CompartmentDefinition/{code.lower()}"


def check_compartment(code: str) -> None:
    """400 unless ``code`` names a compartment."""
    if not is_compartment(code):
        raise FhirError.of(
            400,
            "not-supported",
            f"{code} is not a compartment; the compartments are {', '.join(compartment_codes())} (CompartmentDefinition)",
        )


def members(compartment: Compartment, asked: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """The searched types of ``compartment``, each with the parameters that put a resource of it
    there: ``asked`` (a type search's type, ``*``'s ``_type``), or every searchable member when
    ``asked`` is empty. 400 for an asked type the compartment does not hold, and for a focal id
    that is no FHIR id."""
    check_compartment(compartment.code)
    check_id(compartment.focal_id)
    definition = compartments()[compartment.code]
    outside = [t for t in asked if t not in definition]
    if outside:
        raise FhirError.of(
            400,
            "invalid",
            f"{', '.join(outside)} {'is' if len(outside) == 1 else 'are'} not in the {compartment.code} compartment "
            f"(CompartmentDefinition/{compartment.code.lower()})",
        )
    chosen = asked or [t for t in definition if is_search_type(t)]
    return {t: tuple(definition[t]) for t in chosen}
