"""BPJS P-Care (primary care) ``pendaftaran`` and ``kunjungan`` <-> Encounter + vital-sign Observations
+ Conditions.

P-Care dates are ``dd-MM-yyyy``. Vital signs become LOINC Observations (the FHIR vital-signs codes and
UCUM units); P-Care sends 0 for "not measured", so 0 gives no Observation and an absent Observation
gives 0 back. kdDiag1..3 become ICD-10 Conditions ranked 1..3 in ``Encounter.diagnosis``. Fields FHIR
has no element for live in the ``pcare-kunjungan`` complex extension.

Upsert keys: a kunjungan with ``noKunjungan`` on that number; otherwise (every pendaftaran, and a
kunjungan not yet numbered) on ``noKartu:tglDaftar:kdPoli``, which a registration and the visit
recorded for it share.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fhir_server.errors import FhirError
from mappings import systems as S
from mappings.fhir import (
    FieldSpec,
    code_from,
    code_in,
    coding,
    icd10,
    identifier,
    identifier_value,
    logical_reference,
    pack,
    translated,
    unpack,
)
from mappings.normalize import (
    Record,
    as_card_number,
    as_date,
    as_flag,
    as_number,
    as_text,
    iso_to_dmy,
    malformed,
    missing,
)
from mappings.result import MappingResult, full_url

#: (native field, LOINC code, LOINC display, UCUM unit)
VITALS = (
    ("beratBadan", "29463-7", "Body weight", "kg"),
    ("tinggiBadan", "8302-2", "Body height", "cm"),
    ("respRate", "9279-1", "Respiratory rate", "/min"),
    ("heartRate", "8867-4", "Heart rate", "/min"),
    ("lingkarPerut", "8280-0", "Waist Circumference at umbilicus by Tape measure", "cm"),
    ("suhu", "8310-5", "Body temperature", "Cel"),
)
BP_PANEL = ("85354-9", "Blood pressure panel with all children optional")
BP_COMPONENTS = (("sistole", "8480-6", "Systolic blood pressure"), ("diastole", "8462-4", "Diastolic blood pressure"))

PENDAFTARAN_EXTRA: tuple[FieldSpec, ...] = (
    ("kunjSakit", "Boolean", None),
    ("rujukBalik", "Integer", None),
)
KUNJUNGAN_EXTRA: tuple[FieldSpec, ...] = (
    ("kdSadar", "Coding", S.CS_PCARE_SADAR),
    ("kdPoliRujukInternal", "String", None),
    ("rujukLanjut.kdppk", "String", None),
    ("rujukLanjut.tglEstRujuk", "Date", None),
    ("rujukLanjut.subSpesialis.kdSubSpesialis1", "String", None),
    ("rujukLanjut.subSpesialis.kdSarana", "String", None),
    ("rujukLanjut.khusus.kdKhusus", "String", None),
    ("rujukLanjut.khusus.kdSubSpesialis", "String", None),
    ("rujukLanjut.khusus.catatan", "String", None),
    ("kdTacc", "Integer", None),
    ("alasanTacc", "String", None),
    ("anamnesa", "String", None),
    ("alergiMakan", "String", None),
    ("alergiUdara", "String", None),
    ("alergiObat", "String", None),
    ("kdPrognosa", "Coding", S.CS_PCARE_PROGNOSA),
    ("terapiObat", "String", None),
    ("terapiNonObat", "String", None),
    ("bmhp", "String", None),
)

PENDAFTARAN_FIELDS = (
    "kdProviderPeserta",
    "tglDaftar",
    "noKartu",
    "kdPoli",
    "keluhan",
    "kunjSakit",
    "sistole",
    "diastole",
    "beratBadan",
    "tinggiBadan",
    "respRate",
    "lingkarPerut",
    "heartRate",
    "rujukBalik",
    "kdTkp",
)
KUNJUNGAN_FIELDS = (
    "noKunjungan",
    "noKartu",
    "tglDaftar",
    "kdPoli",
    "keluhan",
    "kdSadar",
    "sistole",
    "diastole",
    "beratBadan",
    "tinggiBadan",
    "respRate",
    "heartRate",
    "lingkarPerut",
    "kdStatusPulang",
    "tglPulang",
    "kdDokter",
    "kdDiag1",
    "kdDiag2",
    "kdDiag3",
    "kdPoliRujukInternal",
    "rujukLanjut",
    "kdTacc",
    "alasanTacc",
    "anamnesa",
    "alergiMakan",
    "alergiUdara",
    "alergiObat",
    "kdPrognosa",
    "terapiObat",
    "terapiNonObat",
    "bmhp",
    "suhu",
)
_VITAL_FIELDS = ("sistole", "diastole", *(v[0] for v in VITALS))


def _record(payload: Any, what: str) -> Record:
    if not isinstance(payload, dict):
        raise malformed(f"expected a P-Care {what} (a JSON object)")
    rec = Record(payload)
    if isinstance(rec.raw("request"), dict):
        rec = rec.sub("request")
    return rec


def _at(rec: Record, dotted: str) -> Any:
    parts = dotted.split(".")
    for part in parts[:-1]:
        rec = rec.sub(part)
    return rec.raw(parts[-1])


def _extras(rec: Record, specs: tuple[FieldSpec, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, kind, system in specs:
        raw, field = _at(rec, name), rec.path(name)
        if kind == "Coding":
            out[name] = code_from(system or "", raw, field)
        elif kind == "Boolean":
            out[name] = as_flag(raw, field)
        elif kind == "Date":
            out[name] = None if as_text(raw) is None else as_date(raw, field)
        elif kind == "Integer":
            n = as_number(raw, field)
            out[name] = int(n) if n is not None else None
        else:
            out[name] = as_text(raw)
    return out


def pendaftaran_to_fhir(payload: Any) -> MappingResult:
    """Encounter (+ vital-sign Observations) for a P-Care ``pendaftaran``."""
    rec = _record(payload, "pendaftaran")
    return _to_fhir(rec, _extras(rec, PENDAFTARAN_EXTRA), PENDAFTARAN_EXTRA, kunjungan=False)


def kunjungan_to_fhir(payload: Any) -> MappingResult:
    """Encounter (+ Observations, + kdDiag1..3 Conditions) for a P-Care ``kunjungan``."""
    rec = _record(payload, "kunjungan")
    return _to_fhir(rec, _extras(rec, KUNJUNGAN_EXTRA), KUNJUNGAN_EXTRA, kunjungan=True)


def _to_fhir(rec: Record, extras: dict[str, Any], specs: tuple[FieldSpec, ...], *, kunjungan: bool) -> MappingResult:
    card = as_card_number(rec.raw("noKartu"), rec.path("noKartu"))
    if rec.raw("tglDaftar") is None:
        raise missing(rec.path("tglDaftar"))
    tgl = as_date(rec.raw("tglDaftar"), rec.path("tglDaftar"))
    poli = rec.text("kdPoli")
    if poli is None:
        raise missing(rec.path("kdPoli"))
    visit_key = f"{card}:{tgl}:{poli}"
    no_kunjungan = rec.text("noKunjungan") if kunjungan else None
    key = (S.PCARE_KUNJUNGAN, no_kunjungan) if no_kunjungan else (S.PCARE_PENDAFTARAN, visit_key)
    encounter_url = full_url("Encounter", *key)
    subject = logical_reference("Patient", S.BPJS_CARD, card)

    identifiers = [identifier(S.PCARE_KUNJUNGAN, no_kunjungan, use="official")] if no_kunjungan else []
    identifiers.append(identifier(S.PCARE_PENDAFTARAN, visit_key, use="secondary"))
    encounter: dict[str, Any] = {"resourceType": "Encounter", "identifier": identifiers, "status": "arrived"}
    tkp = code_from(S.CS_PCARE_TKP, rec.raw("kdTkp"), rec.path("kdTkp")) if not kunjungan else None
    act = translated(S.CM_PCARE_TKP, tkp["code"]) if tkp else None
    encounter["class"] = act or coding(S.V3_ACT_CODE, "AMB", "ambulatory")
    if tkp:
        encounter["type"] = [{"coding": [tkp]}]
    encounter["serviceType"] = {"coding": [coding(S.CS_PCARE_POLI, poli)]}
    encounter["subject"] = subject
    doctor = rec.text("kdDokter")
    if doctor:
        encounter["participant"] = [
            {
                "type": [{"coding": [coding(S.V3_PARTICIPATION, "ATND", "attender")]}],
                "individual": logical_reference("Practitioner", S.PCARE_DOKTER, doctor),
            }
        ]
    period = {"start": tgl}
    pulang = rec.date("tglPulang") if kunjungan else None
    if pulang:
        period["end"] = pulang
        encounter["status"] = "finished"
    elif kunjungan:
        encounter["status"] = "in-progress"
    encounter["period"] = period
    complaint = rec.text("keluhan")
    if complaint:
        encounter["reasonCode"] = [{"text": complaint}]
    status_pulang = rec.text("kdStatusPulang")
    if status_pulang:
        encounter["hospitalization"] = {"dischargeDisposition": {"coding": [coding(S.CS_PCARE_STATUS_PULANG, status_pulang)]}}
    provider = rec.text("kdProviderPeserta")
    if provider:
        encounter["serviceProvider"] = logical_reference("Organization", S.BPJS_FASKES, provider)

    result = MappingResult()
    result.add(encounter, key)  # first; diagnosis and extension are filled in below
    diagnoses = []
    if kunjungan:
        for rank in (1, 2, 3):
            field = f"kdDiag{rank}"
            if as_text(rec.raw(field)) is None:
                continue
            code, display = icd10(rec.raw(field), rec.path(field))
            condition_key = (S.SOURCE_KEY, f"{key[1]}:{field}")
            condition_url = result.add(
                {
                    "resourceType": "Condition",
                    "identifier": [identifier(*condition_key)],
                    "clinicalStatus": {"coding": [coding(S.CONDITION_CLINICAL, "active", "Active")]},
                    "category": [{"coding": [coding(S.CONDITION_CATEGORY, "encounter-diagnosis", "Encounter Diagnosis")]}],
                    "code": {"coding": [coding(S.ICD10, code, display)]},
                    "subject": subject,
                    "encounter": {"reference": encounter_url},
                    "recordedDate": tgl,
                },
                condition_key,
            )
            diagnoses.append(
                {
                    "condition": {"reference": condition_url},
                    "use": {"coding": [coding(S.DIAGNOSIS_ROLE, "DD", "Discharge diagnosis")]},
                    "rank": rank,
                }
            )
    if diagnoses:
        encounter["diagnosis"] = diagnoses
    packed = pack(S.EXT_PCARE, extras, specs)
    if packed:
        encounter["extension"] = [packed]
    for observation in _observations(rec, key[1], subject, encounter_url, tgl):
        result.add(observation, (S.SOURCE_KEY, observation["identifier"][0]["value"]))
    return result


def _quantity(value: int | float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": S.UCUM, "code": unit}


def _observations(rec: Record, key: str, subject: dict[str, Any], encounter_url: str, date: str) -> list[dict[str, Any]]:
    def base(code: str, display: str) -> dict[str, Any]:
        return {
            "resourceType": "Observation",
            "identifier": [identifier(S.SOURCE_KEY, f"{key}:{code}")],
            "status": "final",
            "category": [{"coding": [coding(S.OBSERVATION_CATEGORY, "vital-signs", "Vital Signs")]}],
            "code": {"coding": [coding(S.LOINC, code, display)], "text": display},
            "subject": subject,
            "encounter": {"reference": encounter_url},
            "effectiveDateTime": date,
        }

    out = []
    components = []
    for field, code, display in BP_COMPONENTS:
        value = as_number(rec.raw(field), rec.path(field))
        if value:
            components.append({"code": {"coding": [coding(S.LOINC, code, display)]}, "valueQuantity": _quantity(value, "mm[Hg]")})
    if components:
        bp = base(*BP_PANEL)
        bp["component"] = components
        out.append(bp)
    for field, code, display, unit in VITALS:
        value = as_number(rec.raw(field), rec.path(field))
        if value:
            obs = base(code, display)
            obs["valueQuantity"] = _quantity(value, unit)
            out.append(obs)
    return out


# --- Reverse ---------------------------------------------------------------------------------------


def _vitals_from(observations: list[dict[str, Any]]) -> dict[str, int | float]:
    out: dict[str, int | float] = {f: 0 for f in _VITAL_FIELDS}
    by_loinc = {v[1]: v[0] for v in VITALS} | {c[1]: c[0] for c in BP_COMPONENTS}
    for obs in observations:
        code = code_in(obs.get("code"), S.LOINC)
        if code in by_loinc and obs.get("valueQuantity"):
            out[by_loinc[code]] = obs["valueQuantity"]["value"]
        for comp in obs.get("component", []):
            c = code_in(comp.get("code"), S.LOINC)
            if c in by_loinc and comp.get("valueQuantity"):
                out[by_loinc[c]] = comp["valueQuantity"]["value"]
    return out


def _common(encounter: dict[str, Any]) -> dict[str, Any]:
    if encounter.get("resourceType") != "Encounter":
        raise malformed("expected an Encounter resource", "resourceType")
    card = identifier_value(encounter.get("subject"), S.BPJS_CARD)
    if not card:
        raise FhirError.of(422, "required", "Encounter.subject has no BPJS card identifier", "Encounter.subject.identifier")
    start = (encounter.get("period") or {}).get("start")
    if not start:
        raise FhirError.of(422, "required", "Encounter.period.start is required", "Encounter.period.start")
    reasons = encounter.get("reasonCode") or []
    return {
        "noKartu": card,
        "tglDaftar": iso_to_dmy(start),
        "kdPoli": code_in(encounter.get("serviceType"), S.CS_PCARE_POLI),
        "keluhan": reasons[0].get("text") if reasons else None,
    }


def encounter_to_pcare_pendaftaran(encounter: dict[str, Any], observations: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """The P-Care ``pendaftaran`` body for an Encounter and its vital-sign Observations."""
    values = _common(encounter) | _vitals_from(list(observations))
    values["kdProviderPeserta"] = identifier_value(encounter.get("serviceProvider"), S.BPJS_FASKES)
    extras = unpack(encounter, S.EXT_PCARE)
    values["kunjSakit"] = extras.get("kunjSakit")
    values["rujukBalik"] = extras.get("rujukBalik", 0)
    values["kdTkp"] = code_in((encounter.get("type") or [{}])[0], S.CS_PCARE_TKP) or (
        "20" if (encounter.get("class") or {}).get("code") == "IMP" else "10"
    )
    return {f: values.get(f) for f in PENDAFTARAN_FIELDS}


def encounter_to_pcare_kunjungan(
    encounter: dict[str, Any], conditions: Sequence[dict[str, Any]] = (), observations: Sequence[dict[str, Any]] = ()
) -> dict[str, Any]:
    """The P-Care ``kunjungan`` body for an Encounter, its Conditions (by diagnosis rank) and Observations."""
    values = _common(encounter) | _vitals_from(list(observations))
    values["noKunjungan"] = identifier_value(encounter, S.PCARE_KUNJUNGAN)
    end = (encounter.get("period") or {}).get("end")
    values["tglPulang"] = iso_to_dmy(end) if end else None
    values["kdStatusPulang"] = code_in((encounter.get("hospitalization") or {}).get("dischargeDisposition"), S.CS_PCARE_STATUS_PULANG)
    participants = encounter.get("participant") or []
    values["kdDokter"] = next(
        (
            identifier_value(p.get("individual"), S.PCARE_DOKTER)
            for p in participants
            if identifier_value(p.get("individual"), S.PCARE_DOKTER)
        ),
        None,
    )
    by_url = {}
    for condition in conditions:
        for ident in condition.get("identifier", []):
            by_url[ident.get("value")] = condition
        if condition.get("id"):
            by_url[f"Condition/{condition['id']}"] = condition
    key = identifier_value(encounter, S.PCARE_KUNJUNGAN) or identifier_value(encounter, S.PCARE_PENDAFTARAN)
    for diagnosis in encounter.get("diagnosis", []):
        rank = diagnosis.get("rank")
        if rank not in (1, 2, 3):
            continue
        ref = (diagnosis.get("condition") or {}).get("reference")
        diagnosed = by_url.get(ref) or by_url.get(f"{key}:kdDiag{rank}")
        values[f"kdDiag{rank}"] = code_in(diagnosed.get("code"), S.ICD10) if diagnosed else None
    extras = unpack(encounter, S.EXT_PCARE)
    for name, kind, _ in KUNJUNGAN_EXTRA:
        v = extras.get(name)
        if kind == "Date" and v:
            v = iso_to_dmy(v)
        values[name] = v
    rujuk = {k.split(".", 1)[1]: values.pop(k) for k in list(values) if k.startswith("rujukLanjut.")}
    if any(v is not None for v in rujuk.values()):
        sub = {"kdSubSpesialis1": rujuk["subSpesialis.kdSubSpesialis1"], "kdSarana": rujuk["subSpesialis.kdSarana"]}
        khusus = {
            "kdKhusus": rujuk["khusus.kdKhusus"],
            "kdSubSpesialis": rujuk["khusus.kdSubSpesialis"],
            "catatan": rujuk["khusus.catatan"],
        }
        values["rujukLanjut"] = {
            "kdppk": rujuk["kdppk"],
            "tglEstRujuk": rujuk["tglEstRujuk"],
            "subSpesialis": sub if any(v is not None for v in sub.values()) else None,
            "khusus": khusus if any(v is not None for v in khusus.values()) else None,
        }
    else:
        values["rujukLanjut"] = None
    return {f: values.get(f) for f in KUNJUNGAN_FIELDS}


_KUNJUNGAN_ONLY = ("noKunjungan", "kdDiag1", "kdSadar", "kdStatusPulang", "tglPulang", "kdDokter", "anamnesa")


def pcare_to_fhir(payload: Any) -> MappingResult:
    """Either P-Care body: a kunjungan (has visit-only fields such as kdDiag1, kdStatusPulang) or a pendaftaran."""
    rec = _record(payload, "pendaftaran or kunjungan")
    if any(as_text(rec.raw(f)) is not None for f in _KUNJUNGAN_ONLY):
        return kunjungan_to_fhir(payload)
    return pendaftaran_to_fhir(payload)
