"""BPJS VClaim SEP 2.0 (Surat Eligibilitas Peserta) <-> Encounter + Condition.

Two native shapes map to the same Encounter: the insert request ``{"request":{"t_sep":{...}}}`` (what a
hospital files; no SEP number yet) and the insert/lookup response ``{"sep":{...}}`` (with ``noSep``).
The Encounter is upserted on the SEP number when there is one, otherwise on a key built from the
request (card number, date, facility, service type, clinic). diagAwal becomes a Condition (ICD-10)
linked from ``Encounter.diagnosis``. SEP fields FHIR has no element for live in the ``bpjs-sep`` complex
extension, one sub-extension per native field, so :func:`encounter_to_sep_request` restores all of them.
"""

from __future__ import annotations

from typing import Any

from fhir_server.errors import FhirError
from mappings import systems as S
from mappings.fhir import (
    FieldSpec,
    code_from,
    code_in,
    coding,
    extension,
    extension_value,
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
    as_text,
    check_metadata,
    malformed,
    missing,
)
from mappings.result import MappingResult, full_url
from terminology import indonesia

#: t_sep fields kept in the bpjs-sep extension: (path in t_sep, FHIR value type, CodeSystem).
SEP_EXTRA: tuple[FieldSpec, ...] = (
    ("noMR", "String", None),
    ("klsRawat.klsRawatHak", "Coding", S.CS_BPJS_CLASS),
    ("klsRawat.klsRawatNaik", "Coding", S.CS_BPJS_UPGRADE_CLASS),
    ("klsRawat.pembiayaan", "Coding", S.CS_BPJS_UPGRADE_PAYER),
    ("klsRawat.penanggungJawab", "String", None),
    ("rujukan.tglRujukan", "Date", None),
    ("catatan", "String", None),
    ("poli.eksekutif", "Boolean", None),
    ("cob.cob", "Boolean", None),
    ("katarak.katarak", "Boolean", None),
    ("jaminan.lakaLantas", "Coding", S.CS_BPJS_ACCIDENT),
    ("jaminan.noLP", "String", None),
    ("jaminan.penjamin.tglKejadian", "Date", None),
    ("jaminan.penjamin.keterangan", "String", None),
    ("jaminan.penjamin.suplesi.suplesi", "Boolean", None),
    ("jaminan.penjamin.suplesi.noSepSuplesi", "String", None),
    ("jaminan.penjamin.suplesi.lokasiLaka.kdPropinsi", "String", None),
    ("jaminan.penjamin.suplesi.lokasiLaka.kdKabupaten", "String", None),
    ("jaminan.penjamin.suplesi.lokasiLaka.kdKecamatan", "String", None),
    ("tujuanKunj", "Coding", S.CS_BPJS_VISIT_PURPOSE),
    ("flagProcedure", "Coding", S.CS_BPJS_FLAG_PROCEDURE),
    ("kdPenunjang", "Coding", S.CS_BPJS_SUPPORTING),
    ("assesmentPel", "Coding", S.CS_BPJS_ASSESSMENT),
    ("skdp.noSurat", "String", None),
    ("skdp.kodeDPJP", "String", None),
    ("noTelp", "String", None),
    ("user", "String", None),
)

#: The complete t_sep skeleton, in catalogue order; absent values are "" on the way back.
T_SEP_FIELDS = (
    "noKartu",
    "tglSep",
    "ppkPelayanan",
    "jnsPelayanan",
    "klsRawat.klsRawatHak",
    "klsRawat.klsRawatNaik",
    "klsRawat.pembiayaan",
    "klsRawat.penanggungJawab",
    "noMR",
    "rujukan.asalRujukan",
    "rujukan.tglRujukan",
    "rujukan.noRujukan",
    "rujukan.ppkRujukan",
    "catatan",
    "diagAwal",
    "poli.tujuan",
    "poli.eksekutif",
    "cob.cob",
    "katarak.katarak",
    "jaminan.lakaLantas",
    "jaminan.noLP",
    "jaminan.penjamin.tglKejadian",
    "jaminan.penjamin.keterangan",
    "jaminan.penjamin.suplesi.suplesi",
    "jaminan.penjamin.suplesi.noSepSuplesi",
    "jaminan.penjamin.suplesi.lokasiLaka.kdPropinsi",
    "jaminan.penjamin.suplesi.lokasiLaka.kdKabupaten",
    "jaminan.penjamin.suplesi.lokasiLaka.kdKecamatan",
    "tujuanKunj",
    "flagProcedure",
    "kdPenunjang",
    "assesmentPel",
    "skdp.noSurat",
    "skdp.kodeDPJP",
    "dpjpLayan",
    "noTelp",
    "user",
)


def _get(t: Record, dotted: str) -> Any:
    parts = dotted.split(".")
    rec = t
    for part in parts[:-1]:
        rec = rec.sub(part)
    aliases = {"tglSep": ("tglSep", "tglSEP"), "noSurat": ("noSurat", "noSKDP"), "noSepSuplesi": ("noSepSuplesi", "noSuplesi")}
    return rec.raw(*aliases.get(parts[-1], (parts[-1],)))


def t_sep_record(payload: Any) -> Record:
    if not isinstance(payload, dict):
        raise malformed("expected a SEP insert request (a JSON object)")
    rec = Record(payload)
    request = rec.raw("request")
    if request is not None:
        rec = rec.sub("request")
    if rec.raw("t_sep") is None:
        if rec.raw("noKartu") is None:
            raise missing("request.t_sep")
        return rec
    return rec.sub("t_sep")


def sep_request_to_fhir(payload: Any) -> MappingResult:
    """Encounter + Condition for a SEP 2.0 insert request (upsert key: card/date/facility/service/clinic)."""
    t = t_sep_record(payload)
    card = as_card_number(_get(t, "noKartu"), t.path("noKartu"))
    tgl_sep = _required_date(t, "tglSep")
    ppk = _required(t, "ppkPelayanan")
    jns = code_from(S.CS_BPJS_SERVICE_TYPE, _required(t, "jnsPelayanan"), t.path("jnsPelayanan"))
    assert jns is not None
    poli = as_text(_get(t, "poli.tujuan"))
    key = ":".join((card, tgl_sep, ppk, jns["code"], poli or ""))
    extras: dict[str, Any] = {}
    for name, kind, system in SEP_EXTRA:
        raw = _get(t, name)
        field = t.path(name)
        if kind == "Coding":
            extras[name] = code_from(system or "", raw, field)
        elif kind == "Boolean":
            extras[name] = as_flag(raw, field)
        elif kind == "Date":
            extras[name] = None if as_text(raw) is None else as_date(raw, field)
        else:
            extras[name] = as_text(raw)
    native = {
        "card": card,
        "tglSep": tgl_sep,
        "ppk": ppk,
        "jns": jns,
        "poli": poli,
        "asalRujukan": code_from(S.CS_BPJS_REFERRAL_SOURCE, _get(t, "rujukan.asalRujukan"), t.path("rujukan.asalRujukan")),
        "noRujukan": as_text(_get(t, "rujukan.noRujukan")),
        "ppkRujukan": as_text(_get(t, "rujukan.ppkRujukan")),
        "dpjpLayan": as_text(_get(t, "dpjpLayan")),
        "diag": icd10(_get(t, "diagAwal"), t.path("diagAwal")),
    }
    native["requestKey"] = key
    return _build(native, extras, (S.BPJS_SEP_REQUEST, key), no_sep=None)


def _required(t: Record, name: str) -> str:
    value = as_text(_get(t, name))
    if value is None:
        raise missing(t.path(name))
    return value


def _required_date(t: Record, name: str) -> str:
    return as_date(_required(t, name), t.path(name))


def _build(native: dict[str, Any], extras: dict[str, Any], key: tuple[str, str], no_sep: str | None) -> MappingResult:
    result = MappingResult()
    card = native["card"]
    encounter_url = full_url("Encounter", *key)
    act = translated(S.CM_BPJS_SERVICE_TYPE, native["jns"]["code"])
    assert act is not None
    subject = logical_reference("Patient", S.BPJS_CARD, card, native.get("nama"))
    identifiers = [identifier(S.BPJS_SEP, no_sep, use="official")] if no_sep else []
    identifiers.append(identifier(S.BPJS_SEP_REQUEST, native["requestKey"], use="secondary"))
    encounter: dict[str, Any] = {
        "resourceType": "Encounter",
        "identifier": identifiers,
        "status": "arrived",
        "class": act,
        "type": [{"coding": [native["jns"]]}],
        "subject": subject,
        "period": {"start": native["tglSep"]},
        "serviceProvider": logical_reference("Organization", S.BPJS_FASKES, native["ppk"], native.get("ppkName")),
    }
    if native.get("poli"):
        encounter["serviceType"] = {"coding": [coding(S.CS_BPJS_POLI, native["poli"], native.get("poliName"))]}
    if native.get("noRujukan"):
        encounter["basedOn"] = [logical_reference("ServiceRequest", S.BPJS_RUJUKAN, native["noRujukan"])]
    if native.get("dpjpLayan"):
        encounter["participant"] = [
            {
                "type": [{"coding": [coding(S.V3_PARTICIPATION, "ATND", "attender")]}],
                "individual": logical_reference("Practitioner", S.BPJS_DPJP, native["dpjpLayan"]),
            }
        ]
    hospitalization: dict[str, Any] = {}
    if native.get("ppkRujukan"):
        hospitalization["origin"] = logical_reference("Organization", S.BPJS_FASKES, native["ppkRujukan"])
    if native.get("asalRujukan"):
        hospitalization["admitSource"] = {"coding": [native["asalRujukan"]]}
    if hospitalization:
        encounter["hospitalization"] = hospitalization

    diag_code, diag_display = native["diag"]
    condition_key = (S.SOURCE_KEY, f"{key[1]}:diagAwal")
    condition_url = full_url("Condition", *condition_key)
    encounter["diagnosis"] = [
        {"condition": {"reference": condition_url}, "use": {"coding": [coding(S.DIAGNOSIS_ROLE, "AD", "Admission diagnosis")]}, "rank": 1}
    ]
    ext = [extension(S.EXT_ENCOUNTER_COVERAGE, valueReference=logical_reference("Coverage", S.BPJS_CARD, card))]
    packed = pack(S.EXT_BPJS_SEP, extras, SEP_EXTRA)
    if packed:
        ext.append(packed)
    encounter["extension"] = ext
    result.add(encounter, key)
    condition = {
        "resourceType": "Condition",
        "identifier": [identifier(*condition_key)],
        "clinicalStatus": {"coding": [coding(S.CONDITION_CLINICAL, "active", "Active")]},
        "category": [{"coding": [coding(S.CONDITION_CATEGORY, "encounter-diagnosis", "Encounter Diagnosis")]}],
        "code": {"coding": [coding(S.ICD10, diag_code, diag_display)]},
        "subject": subject,
        "encounter": {"reference": encounter_url},
        "recordedDate": native["tglSep"],
    }
    result.add(condition, condition_key)
    return result


# --- SEP response ------------------------------------------------------------------------------------


def sep_response_to_fhir(payload: Any) -> MappingResult:
    """Encounter + Condition for a SEP insert/lookup response ``{"sep": {...}}`` (upsert on noSep)."""
    if not isinstance(payload, dict):
        raise malformed("expected a SEP response (a JSON object)")
    rec = Record(payload)
    if isinstance(rec.raw("response"), dict):
        rec = rec.sub("response")
    sep = rec.sub("sep") if rec.raw("sep") is not None else rec
    no_sep = as_text(sep.raw("noSep"))
    if no_sep is None:
        raise missing(sep.path("noSep"))
    peserta = sep.sub("peserta")
    card = as_card_number(peserta.raw("noKartu"), peserta.path("noKartu"))
    jns_text = sep.text("jnsPelayanan")
    if jns_text is None:
        raise missing(sep.path("jnsPelayanan"))
    jns = code_from(S.CS_BPJS_SERVICE_TYPE, jns_text, sep.path("jnsPelayanan"), by_label=True)
    assert jns is not None
    extras: dict[str, Any] = {
        "noMR": peserta.text("noMr", "noMR"),
        "catatan": sep.text("catatan"),
        "poli.eksekutif": as_flag(sep.raw("poliEksekutif"), sep.path("poliEksekutif")),
    }
    for name, alias in (
        ("tujuanKunj", "tujuanKunj"),
        ("flagProcedure", "flagProcedure"),
        ("kdPenunjang", "kdPenunjang"),
        ("assesmentPel", "assestmenPel"),
    ):
        code, label = sep.kode(alias)
        spec = next(s for s in SEP_EXTRA if s[0] == name)
        extras[name] = code_from(spec[2] or "", code, sep.path(alias), display=label)
    native: dict[str, Any] = {
        "card": card,
        "nama": peserta.text("nama"),
        "tglSep": sep.date("tglSep"),
        "ppk": no_sep[:8],
        "jns": jns,
        "poli": sep.text("kdPoli"),
        "poliName": sep.text("poli"),
        "noRujukan": sep.text("noRujukan"),
        "diag": icd10(sep.raw("diagnosa", "diagAwal"), sep.path("diagnosa")),
    }
    if native["tglSep"] is None:
        raise missing(sep.path("tglSep"))
    # A SEP number starts with the issuing facility's code, so the request key can be rebuilt: the
    # Encounter then carries both identifiers and can be matched to one imported from the request.
    native["requestKey"] = ":".join((card, native["tglSep"], native["ppk"], jns["code"], native["poli"] or ""))
    return _build(native, extras, (S.BPJS_SEP, no_sep), no_sep=no_sep)


def sep_to_fhir(payload: Any) -> MappingResult:
    """Either SEP shape: a response (has ``noSep``) or an insert request (``request.t_sep``)."""
    if isinstance(payload, dict):
        check_metadata(payload)
        rec = Record(payload)
        inner = rec.raw("response") if isinstance(rec.raw("response"), dict) else payload
        if isinstance(inner, dict) and (Record(inner).raw("sep") is not None or Record(inner).raw("noSep")):
            return sep_response_to_fhir(payload)
    return sep_request_to_fhir(payload)


# --- Reverse ---------------------------------------------------------------------------------------


def encounter_to_sep_request(
    encounter: dict[str, Any], condition: dict[str, Any] | None = None, *, user: str | None = None
) -> dict[str, Any]:
    """The SEP 2.0 insert request for an Encounter (and its diagAwal Condition).

    Absent values are "" as the catalogue expects; ``user`` overrides the stored ``user``.
    """
    if encounter.get("resourceType") != "Encounter":
        raise malformed("expected an Encounter resource", "resourceType")
    values: dict[str, Any] = {}
    coverage_ref = extension_value(encounter, S.EXT_ENCOUNTER_COVERAGE)
    values["noKartu"] = identifier_value(coverage_ref, S.BPJS_CARD) or identifier_value(encounter.get("subject"), S.BPJS_CARD)
    if not values["noKartu"]:
        raise FhirError.of(
            422,
            "required",
            "Encounter has no BPJS card number (subject or encounter-coverage extension identifier)",
            "Encounter.subject.identifier",
        )
    values["tglSep"] = ((encounter.get("period") or {}).get("start") or "")[:10]
    values["ppkPelayanan"] = identifier_value(encounter.get("serviceProvider"), S.BPJS_FASKES)
    jns = code_in((encounter.get("type") or [{}])[0], S.CS_BPJS_SERVICE_TYPE)
    if not jns:
        act = (encounter.get("class") or {}).get("code")
        back = translated(S.CM_BPJS_SERVICE_TYPE, act, reverse=True) if act else None
        jns = back["code"] if back else None
    if not jns:
        raise FhirError.of(422, "code-invalid", "Encounter.class must be IMP or AMB for a SEP", "Encounter.class")
    values["jnsPelayanan"] = jns
    hospitalization = encounter.get("hospitalization") or {}
    values["rujukan.asalRujukan"] = code_in(hospitalization.get("admitSource"), S.CS_BPJS_REFERRAL_SOURCE)
    values["rujukan.ppkRujukan"] = identifier_value(hospitalization.get("origin"), S.BPJS_FASKES)
    based_on = encounter.get("basedOn") or []
    values["rujukan.noRujukan"] = identifier_value(based_on[0], S.BPJS_RUJUKAN) if based_on else None
    values["poli.tujuan"] = code_in(encounter.get("serviceType"), S.CS_BPJS_POLI)
    participants = encounter.get("participant") or []
    values["dpjpLayan"] = next(
        (identifier_value(p.get("individual"), S.BPJS_DPJP) for p in participants if identifier_value(p.get("individual"), S.BPJS_DPJP)),
        None,
    )
    if condition:
        values["diagAwal"] = code_in(condition.get("code"), S.ICD10)
    extras = unpack(encounter, S.EXT_BPJS_SEP)
    for name, kind, _system in SEP_EXTRA:
        v = extras.get(name)
        values[name] = ("1" if v else "0") if kind == "Boolean" and v is not None else v
    if user is not None:
        values["user"] = user
    t_sep: dict[str, Any] = {}
    for dotted in T_SEP_FIELDS:
        node = t_sep
        parts = dotted.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        v = values.get(dotted)
        node[parts[-1]] = "" if v is None else str(v)
    return {"request": {"t_sep": t_sep}}


_RESPONSE_SERVICE_LABEL = {"1": "R.Inap", "2": "R.Jalan"}


def encounter_to_sep_response(encounter: dict[str, Any], condition: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``{"sep": {...}}`` response shape for an Encounter that has a SEP number (the ``$sep`` view)."""
    no_sep = identifier_value(encounter, S.BPJS_SEP)
    if not no_sep:
        raise FhirError.of(422, "required", f"Encounter has no identifier with system {S.BPJS_SEP}", "Encounter.identifier")
    request = encounter_to_sep_request(encounter, condition)["request"]["t_sep"]
    extras = unpack(encounter, S.EXT_BPJS_SEP)
    diagnosa = None
    icd = (condition or {}).get("code")
    for c in (icd or {}).get("coding", []):
        if c.get("system") == S.ICD10:
            diagnosa = c["code"] + (f" - {c['display']}" if c.get("display") else "")
    service_type = encounter.get("serviceType") or {}

    def kode(name: str) -> dict[str, Any]:
        spec = next(s for s in SEP_EXTRA if s[0] == name)
        code = extras.get(name)
        concept = indonesia.lookup(spec[2] or "", code) if code is not None else None
        return {"kode": code, "nama": concept.display if concept else None}

    subject = encounter.get("subject") or {}
    return {
        "sep": {
            "noSep": no_sep,
            "tglSep": request["tglSep"],
            "jnsPelayanan": _RESPONSE_SERVICE_LABEL.get(request["jnsPelayanan"], request["jnsPelayanan"]),
            "kdPoli": request["poli"]["tujuan"] or None,
            "poli": next((c.get("display") for c in service_type.get("coding", []) if c.get("display")), None),
            "poliEksekutif": request["poli"]["eksekutif"] or None,
            "noRujukan": request["rujukan"]["noRujukan"] or None,
            "diagnosa": diagnosa,
            "catatan": request["catatan"] or None,
            "tujuanKunj": kode("tujuanKunj"),
            "flagProcedure": kode("flagProcedure"),
            "kdPenunjang": kode("kdPenunjang"),
            "assestmenPel": kode("assesmentPel"),
            "peserta": {"noKartu": request["noKartu"], "nama": subject.get("display"), "noMr": request["noMR"] or None},
        }
    }
