"""BPJS VClaim ``Peserta`` (participant) <-> Patient + Coverage (+ payor and provider Organizations).

SATUSEHAT has no Coverage API, so the Coverage side is this project's design (docs/mappings.md): the card
number is both a Patient identifier and ``Coverage.identifier``/``subscriberId``; the payor is a
"BPJS Kesehatan" Organization; ``class`` carries jenisPeserta (plan) and hakKelas (class); provUmum is the
SATUSEHAT ``PrimaryCareProvider`` extension. Unknown jenisPeserta/statusPeserta codes flow through with
their keterangan, since BPJS publishes no complete list.
"""

from __future__ import annotations

from typing import Any

from fhir_server.errors import FhirError, Issue
from mappings import systems as S
from mappings.fhir import (
    code_from,
    code_in,
    coding,
    extension,
    extension_value,
    get_extension,
    identifier,
    identifier_value,
    logical_reference,
    translated,
)
from mappings.nik import check_nik, consistency_warnings
from mappings.normalize import Record, as_card_number, as_text, check_metadata, malformed, missing
from mappings.result import MappingResult, full_url

_COB_FIELDS = ("nmAsuransi", "noAsuransi", "tglTMT", "tglTAT")
_INFO_FIELDS = ("dinsos", "noSKTM", "prolanisPRB")


def peserta_record(payload: Any) -> Record:
    """The ``peserta`` object of a payload: the envelope, its decrypted ``response``, or the bare object."""
    if not isinstance(payload, dict):
        raise malformed("expected a BPJS Peserta response (a JSON object)")
    check_metadata(payload)
    rec = Record(payload)
    response = rec.raw("response")
    if isinstance(response, dict):
        rec = Record(response)
    elif isinstance(response, str):
        raise malformed("response: still encrypted; decrypt it first (mappings.vclaim_security)", "response")
    peserta = rec.raw("peserta")
    if peserta is None:
        if rec.raw("noKartu") is not None:
            return Record(rec.data, "peserta.")  # a bare peserta object
        raise missing("peserta")
    # Errors name fields as BPJS documents them (peserta.noKartu), whichever wrapper came in.
    return Record(peserta, "peserta.") if isinstance(peserta, dict) else rec.sub("peserta")


def bpjs_peserta_to_fhir(payload: Any) -> MappingResult:
    """Patient (upsert on NIK, else card number), Coverage (upsert on card number) and Organizations."""
    p = peserta_record(payload)
    result = MappingResult()
    card = as_card_number(p.raw("noKartu"), p.path("noKartu"))
    payor_url = result.add(_payor(), (S.BPJS_PAYOR, S.BPJS_PAYOR_VALUE), mode="create")

    patient, warnings = _patient(p, card)
    nik = identifier_value(patient, S.NIK)
    patient_key = (S.NIK, nik) if nik else (S.BPJS_CARD, card)
    patient_url = full_url("Patient", *patient_key)

    coverage = _coverage(p, card, patient_url, payor_url, result)
    result.add(patient, patient_key)
    result.add(coverage, (S.BPJS_CARD, card))
    result.warnings.extend(warnings)
    return result


def _payor() -> dict[str, Any]:
    return {
        "resourceType": "Organization",
        "identifier": [identifier(S.BPJS_PAYOR, S.BPJS_PAYOR_VALUE)],
        "active": True,
        "type": [{"coding": [coding("http://terminology.hl7.org/CodeSystem/organization-type", "pay", "Payer")]}],
        "name": S.BPJS_PAYOR_NAME,
    }


def _patient(p: Record, card: str) -> tuple[dict[str, Any], list[Issue]]:
    warnings: list[Issue] = []
    identifiers = []
    nik = p.raw("nik", "noKTP")
    facts = None
    if as_text(nik) is not None:
        facts, warnings = check_nik(nik, p.path("nik"))
        identifiers.append(identifier(S.NIK, facts.nik, use="official"))
    identifiers.append(identifier(S.BPJS_CARD, card, use="secondary"))
    mr = p.sub("mr")
    no_mr = mr.text("noMR")
    if no_mr:
        identifiers.append(identifier(S.BPJS_MR, no_mr, use="usual", type_code="MR"))
    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "meta": {"profile": [S.SATUSEHAT_PATIENT_PROFILE]},
        "identifier": identifiers,
        "active": True,
        "name": [{"use": "official", "text": p.required_text("nama")}],
    }
    phone = mr.text("noTelepon") or p.text("noHP")
    if phone:
        patient["telecom"] = [{"system": "phone", "value": phone, "use": "mobile"}]
    sex = code_from(S.CS_BPJS_SEX, p.raw("sex", "kelamin"), p.path("sex"), by_label=True)
    if sex:
        gender = translated(S.CM_BPJS_SEX, sex["code"])
        patient["gender"] = gender["code"] if gender else "unknown"
    birth = p.date("tglLahir")
    if birth:
        patient["birthDate"] = birth
    if facts:
        warnings += consistency_warnings(facts, gender=patient.get("gender"), birth_date=birth, field=p.path("nik"))
    return patient, warnings


def _coverage(p: Record, card: str, patient_url: str, payor_url: str, result: MappingResult) -> dict[str, Any]:
    status_code, status_label = p.kode("statusPeserta")
    status = code_from(S.CS_BPJS_STATUS, status_code, p.path("statusPeserta.kode"), display=status_label)
    coverage: dict[str, Any] = {
        "resourceType": "Coverage",
        "identifier": [identifier(S.BPJS_CARD, card)],
        "status": "active" if status is None or status["code"] == "0" else "cancelled",
        "type": {"coding": [coding(S.V3_ACT_CODE, "PUBLICPOL", "public healthcare")], "text": "JKN"},
        "subscriberId": card,
        "beneficiary": {"reference": patient_url, "display": p.required_text("nama")},
    }
    pisa = p.text("pisa")
    if pisa:
        coverage["relationship"] = {"coding": [coding(S.CS_BPJS_PISA, pisa)]}
    start, end = p.date("tglTMT"), p.date("tglTAT")
    if start or end:
        coverage["period"] = {k: v for k, v in (("start", start), ("end", end)) if v}
    coverage["payor"] = [{"reference": payor_url, "display": S.BPJS_PAYOR_NAME}]
    classes = []
    for field, class_type, system in (("jenisPeserta", "plan", S.CS_BPJS_PARTICIPANT_TYPE), ("hakKelas", "class", S.CS_BPJS_CLASS)):
        code, label = p.kode(field)
        if code is None:
            continue
        c = code_from(system, code, p.path(f"{field}.kode"), display=label)
        assert c is not None
        entry: dict[str, Any] = {"type": {"coding": [coding(S.COVERAGE_CLASS, class_type)]}, "value": c["code"]}
        name = c.get("display") or label
        if name:
            entry["name"] = name
        classes.append(entry)
    if classes:
        coverage["class"] = classes

    extensions = []
    if status:
        extensions.append(extension(S.EXT_COVERAGE_STATUS, valueCoding=status))
    provider = p.sub("provUmum")
    kd_provider = provider.text("kdProvider")
    if kd_provider:
        org = {"resourceType": "Organization", "identifier": [identifier(S.BPJS_FASKES, kd_provider)], "active": True}
        name = provider.text("nmProvider")
        if name:
            org["name"] = name
        org_url = result.add(org, (S.BPJS_FASKES, kd_provider), mode="create")
        extensions.append(
            extension(
                S.EXT_PRIMARY_CARE_PROVIDER,
                valueReference=logical_reference("Organization", S.BPJS_FASKES, kd_provider, name, reference=org_url),
            )
        )
    details = _peserta_details(p)
    if details:
        extensions.append(details)
    if extensions:
        coverage["extension"] = extensions
    return coverage


def _peserta_details(p: Record) -> dict[str, Any] | None:
    """Our ``bpjs-peserta`` extension: fields with no Coverage element (card print date, COB, informasi)."""
    subs: list[dict[str, Any]] = []
    printed = p.date("tglCetakKartu")
    if printed:
        subs.append({"url": "tglCetakKartu", "valueDate": printed})
    cob = p.sub("cob")
    for field in _COB_FIELDS:
        value = cob.date(field) if field.startswith("tgl") else cob.text(field)
        if value:
            kind = "valueDate" if field.startswith("tgl") else "valueString"
            subs.append({"url": f"cob.{field}", kind: value})
    info = p.sub("informasi")
    for field in _INFO_FIELDS:
        value = info.text(field)
        if value:
            subs.append({"url": f"informasi.{field}", "valueString": value})
    return {"url": S.EXT_BPJS_PESERTA, "extension": subs} if subs else None


# --- Reverse ---------------------------------------------------------------------------------------


def fhir_to_bpjs_peserta(coverage: dict[str, Any], patient: dict[str, Any] | None = None) -> dict[str, Any]:
    """The decrypted VClaim Peserta response ``{"peserta": {...}}`` for a Coverage and its beneficiary."""
    if coverage.get("resourceType") != "Coverage":
        raise malformed("expected a Coverage resource", "resourceType")
    card = coverage.get("subscriberId") or identifier_value(coverage, S.BPJS_CARD)
    if not card:
        raise FhirError.of(422, "required", "Coverage has no subscriberId (BPJS card number)", "Coverage.subscriberId")
    patient = patient or {}
    peserta: dict[str, Any] = {"noKartu": card, "nik": identifier_value(patient, S.NIK)}
    names = patient.get("name") or []
    peserta["nama"] = (names[0].get("text") if names else None) or (coverage.get("beneficiary") or {}).get("display")
    peserta["pisa"] = code_in(coverage.get("relationship"), S.CS_BPJS_PISA)
    gender = patient.get("gender")
    sex = translated(S.CM_BPJS_SEX, gender, reverse=True) if gender else None
    peserta["sex"] = sex["code"] if sex else None
    peserta["tglLahir"] = patient.get("birthDate")
    details = {
        sub["url"]: next(v for k, v in sub.items() if k.startswith("value"))
        for sub in (get_extension(coverage, S.EXT_BPJS_PESERTA) or {}).get("extension", [])
    }
    peserta["tglCetakKartu"] = details.get("tglCetakKartu")
    period = coverage.get("period") or {}
    peserta["tglTMT"] = period.get("start")
    peserta["tglTAT"] = period.get("end")
    peserta["cob"] = {f: details.get(f"cob.{f}") for f in _COB_FIELDS}
    classes = {code_in(c.get("type"), S.COVERAGE_CLASS): c for c in coverage.get("class", [])}
    peserta["hakKelas"] = _kode(classes.get("class"))
    peserta["informasi"] = {f: details.get(f"informasi.{f}") for f in _INFO_FIELDS}
    peserta["jenisPeserta"] = _kode(classes.get("plan"))
    telecom = next((t.get("value") for t in patient.get("telecom", []) if t.get("system") == "phone"), None)
    peserta["mr"] = {"noMR": identifier_value(patient, S.BPJS_MR), "noTelepon": telecom}
    provider = extension_value(coverage, S.EXT_PRIMARY_CARE_PROVIDER) or {}
    peserta["provUmum"] = {"kdProvider": identifier_value(provider, S.BPJS_FASKES), "nmProvider": provider.get("display")}
    status = extension_value(coverage, S.EXT_COVERAGE_STATUS)
    if status:
        peserta["statusPeserta"] = {"kode": status.get("code"), "keterangan": status.get("display")}
    elif coverage.get("status") == "active":
        peserta["statusPeserta"] = {"kode": "0", "keterangan": "AKTIF"}
    else:
        peserta["statusPeserta"] = {"kode": None, "keterangan": None}
    return {"peserta": peserta}


def _kode(entry: dict[str, Any] | None) -> dict[str, Any]:
    if not entry:
        return {"kode": None, "keterangan": None}
    return {"kode": entry.get("value"), "keterangan": entry.get("name")}
