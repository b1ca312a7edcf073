"""What the console shows about a patient, worked out from FHIR resources (no I/O here).

The NIK is parsed with mappings/nik.py (region, sex and birth date it encodes); region names
come from the Kemendagri codes in terminology/regions.py.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from fhir_server.errors import FhirError
from mappings import systems as S
from mappings.nik import check_nik
from terminology.regions import region_index

_LEVELS = ("province", "city", "district", "village")


def identifier(resource: dict[str, Any], system: str) -> str | None:
    for ident in resource.get("identifier") or []:
        if isinstance(ident, dict) and ident.get("system") == system and ident.get("value"):
            return str(ident["value"])
    return None


def display_name(patient: dict[str, Any]) -> str:
    for name in patient.get("name") or []:
        if not isinstance(name, dict):
            continue
        if name.get("text"):
            return str(name["text"])
        parts = [*(name.get("given") or []), name.get("family") or ""]
        text = " ".join(p for p in parts if p)
        if text:
            return text
    return "-"


def region_path(code: str) -> list[tuple[str, str]]:
    """(code, name) of each level from the province down to ``code`` (names: Kemendagri list)."""
    index = region_index()
    out = []
    for length in (2, 4, 6, 10):
        if len(code) >= length:
            part = code[:length]
            out.append((part, index.name(part) or "?"))
    return out


@dataclass
class NikReading:
    nik: str
    valid: bool
    error: str = ""
    region: list[tuple[str, str]] = field(default_factory=list)
    sex: str = ""
    birth: str = ""
    sex_agrees: bool | None = None
    birth_agrees: bool | None = None
    warnings: list[str] = field(default_factory=list)


def read_nik(nik: str, gender: str | None, birth_date: str | None) -> NikReading:
    """What the NIK encodes, and whether the record's sex and birth date agree with it."""
    try:
        facts, warnings = check_nik(nik)
    except FhirError as exc:
        return NikReading(nik, False, "; ".join(i.diagnostics or "" for i in exc.issues))
    reading = NikReading(nik, True, region=region_path(facts.district), sex=facts.gender)
    reading.birth = f"{facts.month_day[3:]}-{facts.month_day[:2]}-..{facts.year2}"
    reading.warnings = [w.diagnostics or "" for w in warnings]
    if gender in ("male", "female"):
        reading.sex_agrees = gender == facts.gender
    if birth_date and len(birth_date) >= 10:
        reading.birth_agrees = birth_date[5:10] == facts.month_day and birth_date[2:4] == facts.year2
    return reading


@dataclass
class Address:
    text: str
    regions: list[tuple[str, str]]
    rt_rw: str = ""


def addresses(patient: dict[str, Any]) -> list[Address]:
    out = []
    for a in patient.get("address") or []:
        if not isinstance(a, dict):
            continue
        codes: dict[str, str] = {}
        for ext in a.get("extension") or []:
            if isinstance(ext, dict) and ext.get("url") == S.EXT_ADMINISTRATIVE_CODE:
                codes = {str(e.get("url")): str(e.get("valueCode")) for e in ext.get("extension") or [] if isinstance(e, dict)}
        deepest = next((codes[level] for level in reversed(_LEVELS) if codes.get(level)), "")
        text = ", ".join(str(x) for x in [*(a.get("line") or []), a.get("city"), a.get("state")] if x) or a.get("text") or "-"
        rt_rw = f"RT {codes['rt']} / RW {codes['rw']}" if codes.get("rt") and codes.get("rw") else ""
        out.append(Address(text, region_path(deepest) if deepest else [], rt_rw))
    return out


def coverage_active(coverage: dict[str, Any], today: str | None = None) -> bool:
    """Active status and today inside the period (an open end counts as ongoing)."""
    if coverage.get("status") != "active":
        return False
    now = today or dt.datetime.now(dt.UTC).date().isoformat()
    period = coverage.get("period") or {}
    start, end = str(period.get("start") or "")[:10], str(period.get("end") or "")[:10]
    return (not start or start <= now) and (not end or now <= end)


def codeable_text(cc: Any) -> str:
    if not isinstance(cc, dict):
        return ""
    if cc.get("text"):
        return str(cc["text"])
    for coding in cc.get("coding") or []:
        if isinstance(coding, dict) and (coding.get("display") or coding.get("code")):
            code = coding.get("code") or ""
            return f"{coding.get('display') or ''} ({code})".strip() if coding.get("display") else str(code)
    return ""


def encounter_start(encounter: dict[str, Any]) -> str:
    return str((encounter.get("period") or {}).get("start") or "")


#: LOINC codes of the vital signs charted (R4 vital signs profile), with their units
VITALS: dict[str, tuple[str, str]] = {
    "8867-4": ("Nadi / Heart rate", "/min"),
    "8310-5": ("Suhu / Temperature", "Cel"),
    "9279-1": ("Napas / Respiratory rate", "/min"),
    "29463-7": ("Berat badan / Body weight", "kg"),
    "8480-6": ("Sistolik / Systolic BP", "mm[Hg]"),
    "8462-4": ("Diastolik / Diastolic BP", "mm[Hg]"),
    "59408-5": ("SpO2", "%"),
}
_BP_PANEL = "85354-9"


def vital_series(observations: list[dict[str, Any]]) -> dict[str, list[tuple[str, float]]]:
    """LOINC code -> [(effective time, value)] sorted by time; blood-pressure panels are split
    into their systolic and diastolic components."""
    series: dict[str, list[tuple[str, float]]] = {}

    def add(code: str, when: str, quantity: Any) -> None:
        # jsonio parses decimals as Decimal (FHIR keeps their precision): any real number will do
        value = quantity.get("value") if isinstance(quantity, dict) else None
        if code in VITALS and isinstance(value, int | float | Decimal) and not isinstance(value, bool):
            series.setdefault(code, []).append((when, float(value)))

    for obs in observations:
        when = str(obs.get("effectiveDateTime") or (obs.get("effectivePeriod") or {}).get("start") or "")
        if not when:
            continue
        codes = [
            c.get("code")
            for c in (obs.get("code") or {}).get("coding") or []
            if isinstance(c, dict) and c.get("system") == "http://loinc.org"
        ]
        for code in codes:
            add(str(code), when, obs.get("valueQuantity"))
        if _BP_PANEL in codes:
            for comp in obs.get("component") or []:
                for c in (comp.get("code") or {}).get("coding") or []:
                    add(str(c.get("code")), when, comp.get("valueQuantity"))
    return {code: sorted(points) for code, points in series.items()}
