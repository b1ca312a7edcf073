"""The FHIR R4 core value sets that R4 elements bind with strength "required".

Data: ``terminology/content/r4/required_valuesets.json.gz``, generated from the
official hl7.fhir.r4.core 4.0.1 package by ``scripts/generate_r4_definitions.py``.
Loaded lazily, once per process.

A value set is *enumerable* when every code can be listed from the package.
The others draw on external code systems (mime types, currencies, UCUM, a
LOINC answer list); :func:`contains` answers ``None`` for them, and
:func:`check_syntax` offers a cheap shape check where one makes sense.
"""

from __future__ import annotations

import gzip
import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

DATA_FILE = Path(__file__).resolve().parent / "content" / "r4" / "required_valuesets.json.gz"

# Shape checks for codes from external code systems, keyed by the ``syntax``
# name the generator records. Deliberately loose: they catch garbage, not
# every unregistered code.
_SYNTAX = {
    # RFC 6838 type/subtype with optional parameters (BCP 13). "xml", "json"
    # and "ttl" are the shorthands CapabilityStatement.format explicitly allows.
    "mimetype": re.compile(
        r"xml|json|ttl|[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
        r"(\s*;\s*[A-Za-z0-9!#$&^_.+-]+=(\"[^\"]*\"|[^\s;]+))*",
        re.ASCII,
    ),
    # BCP 47 language tag, simplified: language(-subtag)*.
    "bcp47": re.compile(r"[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*", re.ASCII),
    # ISO 4217 alphabetic currency code.
    "iso4217": re.compile(r"[A-Z]{3}", re.ASCII),
    # UCUM expression: printable ASCII without spaces.
    "ucum": re.compile(r"[!-~]+", re.ASCII),
}


class ValueSet:
    """One required value set: its codes per system, or why it has none."""

    __slots__ = ("codes", "enumerable", "pairs", "reason", "syntax", "systems", "url", "version")

    def __init__(self, url: str, record: dict[str, Any]) -> None:
        self.url = url
        self.version: str | None = record.get("version")
        self.enumerable: bool = record["enumerable"]
        self.systems: dict[str, frozenset[str]] = {s: frozenset(c) for s, c in record.get("include", {}).items()}
        self.codes: frozenset[str] = frozenset().union(*self.systems.values()) if self.systems else frozenset()
        self.pairs: frozenset[tuple[str, str]] = frozenset((s, c) for s, codes in self.systems.items() for c in codes)
        self.reason: str | None = record.get("reason")
        self.syntax: re.Pattern[str] | None = _SYNTAX.get(record.get("syntax", ""))


def _unversioned(url: str) -> str:
    return url.split("|", 1)[0]


@lru_cache(maxsize=1)
def _all() -> dict[str, ValueSet]:
    with gzip.open(DATA_FILE, "rb") as fh:
        data = json.load(fh)
    return {url: ValueSet(url, rec) for url, rec in data["valueSets"].items()}


def get(valueset_url: str) -> ValueSet | None:
    """The value set for a canonical URL (``|version`` suffix allowed), or None if unknown."""
    return _all().get(_unversioned(valueset_url))


def urls() -> list[str]:
    """Canonical URLs (without version) of all required-binding value sets."""
    return sorted(_all())


def contains(valueset_url: str, system: str | None, code: str) -> bool | None:
    """Whether ``(system, code)`` is in the value set.

    ``system=None`` checks the code alone (a bare ``code`` element, whose system
    is implied by the binding). Returns None when the value set is unknown or
    cannot be enumerated from the package.
    """
    vs = get(valueset_url)
    if vs is None or not vs.enumerable:
        return None
    if system is None:
        return code in vs.codes
    return (system, code) in vs.pairs


def codes(valueset_url: str) -> frozenset[tuple[str, str]] | None:
    """All ``(system, code)`` pairs of the value set, or None if not enumerable/unknown."""
    vs = get(valueset_url)
    if vs is None or not vs.enumerable:
        return None
    return vs.pairs


def check_syntax(valueset_url: str, code: str) -> bool | None:
    """Shape check for codes of a non-enumerable value set; None if it has none."""
    vs = get(valueset_url)
    if vs is None or vs.syntax is None:
        return None
    return vs.syntax.fullmatch(code) is not None
