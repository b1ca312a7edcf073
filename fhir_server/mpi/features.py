"""What matching reads from a Patient, extracted once per record (pure, no I/O).

Identifiers are read by system (SATUSEHAT's NIK, nik-ibu and IHS number, our BPJS card number;
mappings/systems.py); the NIK is parsed by ``mappings.nik`` (region, birth date with +40 for
women, serial) and marked *suspect* when what it encodes contradicts the record's own sex or
birth date: a NIK is never re-issued when registry data is corrected, and a mother's NIK is
often typed into her baby's record.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from fhir_server.errors import FhirError
from fhir_server.mpi.names import ParsedName, parse_name
from mappings import systems as S
from mappings.nik import NikFacts, check_nik, consistency_warnings

#: identifier systems read as the IHS number (SATUSEHAT's pages spell it both ways)
IHS_SYSTEMS = frozenset({S.IHS, "https://fhir.kemkes.go.id/id/ihs-number"})
BPJS_SYSTEMS = frozenset({S.BPJS_CARD})
_NON_DIGITS = re.compile(r"\D")
NO_NAME = ParsedName(())


@dataclass(frozen=True, slots=True)
class Nik:
    value: str
    #: parsed when structurally valid (16 digits, real date, known province, serial not 0000)
    facts: NikFacts | None
    #: what it encodes contradicts the record's sex or birth date
    suspect: bool

    @property
    def valid(self) -> bool:
        return self.facts is not None


@dataclass(frozen=True, slots=True)
class Features:
    """One Patient, reduced to what the scorer compares."""

    nik: Nik | None = None
    #: the mother's NIK on a newborn's record (system nik-ibu): a household signal only
    mother_niks: frozenset[str] = frozenset()
    bpjs: frozenset[str] = frozenset()
    ihs: frozenset[str] = frozenset()
    name: ParsedName = NO_NAME
    #: other names on the record (aliases, maiden names), already parsed
    other_names: tuple[ParsedName, ...] = ()
    birth_date: str | None = None
    gender: str | None = None
    phones: frozenset[str] = frozenset()
    #: Kemendagri village code (10 digits) and RT/RW of the first address that has them
    village: str | None = None
    rt: str | None = None
    rw: str | None = None
    #: multipleBirthInteger (twins: 1, 2; SATUSEHAT uses 0 for a single birth)
    birth_order: int | None = None

    @property
    def newborn(self) -> bool:
        """A newborn's record: the "By. Ny." placeholder name, or only a mother's NIK to go by."""
        return self.name.newborn or (self.nik is None and bool(self.mother_niks))

    def has_enough(self) -> bool:
        """Enough to match on: an identifier, or a name with a birth date."""
        return bool(self.nik or self.bpjs or self.ihs or self.mother_niks) or bool(self.name.tokens and self.birth_date)


def digits(value: str) -> str:
    return _NON_DIGITS.sub("", value)


def phone_key(value: str) -> str | None:
    """An Indonesian phone number in one form: digits, without +62 / 62 / 0, the last 10 kept."""
    d = digits(value)
    if d.startswith("62"):
        d = d[2:]
    d = d.lstrip("0")
    return d[-10:] if len(d) >= 7 else None


def parse_nik(value: str, *, gender: str | None, birth_date: str | None) -> Nik:
    """A NIK with its facts (when valid) and whether it contradicts the record's sex or birth date."""
    d = digits(value)
    try:
        facts, _ = check_nik(d)
    except FhirError:
        return Nik(d, None, False)
    suspect = bool(consistency_warnings(facts, gender=gender, birth_date=birth_date))
    return Nik(d, facts, suspect)


def extract(patient: dict[str, Any]) -> Features:
    """The features of a Patient (a FHIR JSON dict); tolerant of anything malformed."""
    gender = patient.get("gender") if patient.get("gender") in ("male", "female") else None
    birth = patient.get("birthDate")
    birth_date = birth if isinstance(birth, str) and len(birth) >= 4 else None

    niks: list[str] = []
    mothers: set[str] = set()
    bpjs: set[str] = set()
    ihs: set[str] = set()
    for ident in _dicts(patient.get("identifier")):
        system, value = ident.get("system"), ident.get("value")
        if not isinstance(value, str) or not value.strip() or ident.get("use") == "old":
            continue
        if system == S.NIK:
            niks.append(value)
        elif system == S.NIK_IBU:
            mothers.add(digits(value))
        elif system in BPJS_SYSTEMS:
            bpjs.add(digits(value))
        elif system in IHS_SYSTEMS:
            ihs.add(value.strip().upper())
    nik = parse_nik(niks[0], gender=gender, birth_date=birth_date) if niks else None

    names = [_name_text(n) for n in _dicts(patient.get("name"))]
    parsed = [parse_name(t) for t in names if t]
    parsed = [p for p in parsed if p.tokens] or [NO_NAME]
    official = next((p for n, p in zip(_dicts(patient.get("name")), parsed, strict=False) if n.get("use") == "official"), parsed[0])

    phones = {
        k
        for t in _dicts(patient.get("telecom"))
        if t.get("system") in (None, "phone", "sms") and isinstance(t.get("value"), str)
        for k in [phone_key(t["value"])]
        if k
    }
    village, rt, rw = _admin_codes(patient)
    order = patient.get("multipleBirthInteger")
    return Features(
        nik=nik,
        mother_niks=frozenset(mothers),
        bpjs=frozenset(bpjs),
        ihs=frozenset(ihs),
        name=official,
        other_names=tuple(p for p in parsed if p is not official),
        birth_date=birth_date,
        gender=gender,
        phones=frozenset(phones),
        village=village,
        rt=rt,
        rw=rw,
        birth_order=order if isinstance(order, int) and not isinstance(order, bool) else None,
    )


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _name_text(name: dict[str, Any]) -> str:
    text = name.get("text")
    if isinstance(text, str) and text.strip():
        return text
    parts = [*(name.get("prefix") or []), *(name.get("given") or []), name.get("family") or ""]
    return " ".join(p for p in parts if isinstance(p, str))


def _admin_codes(patient: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
    for address in _dicts(patient.get("address")):
        for ext in _dicts(address.get("extension")):
            if ext.get("url") != S.EXT_ADMINISTRATIVE_CODE:
                continue
            parts = {e.get("url"): e.get("valueCode") for e in _dicts(ext.get("extension"))}
            village = parts.get("village")
            if isinstance(village, str) and village:
                village = digits(village)
                rt, rw = parts.get("rt"), parts.get("rw")
                return (
                    village,
                    digits(rt).zfill(3) if isinstance(rt, str) and digits(rt) else None,
                    digits(rw).zfill(3) if isinstance(rw, str) and digits(rw) else None,
                )
    return None, None, None
