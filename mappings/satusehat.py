"""Local FHIR resources -> the shapes SATUSEHAT accepts (pure: no I/O).

What is sent and why (docs/satusehat.md; reference: SATUSEHAT playbook "Rawat Jalan" and the
kamus validasi): Encounter, Condition, Observation, Procedure, Location and Organization sub-units
(an Organization with ``partOf``). Every resource gets one
identifier ``http://sys-ids.kemkes.go.id/<type>/<organization id>`` whose value is the local id
(stable, unique within the facility), which is also what the sync looks a resource up by after a
lost answer. References are rewritten to SATUSEHAT ids (Patient and Practitioner: IHS numbers);
times go out in UTC (``+00:00``). :func:`hold_reason` says, before anything is sent, why
SATUSEHAT's rules would refuse a resource; the sync holds such a resource instead of sending it.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mappings import systems as S

SYS_IDS = "http://sys-ids.kemkes.go.id"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
UCUM = "http://unitsofmeasure.org"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"

#: the types sent, parents before children (the order a patient's work is done in)
SYNCED_TYPES = ("Organization", "Location", "Encounter", "Condition", "Observation", "Procedure")
#: the types SATUSEHAT may know already (registered by hand, by an earlier bridge): always looked up
#: by identifier before the first create, and the id found remembered
LOOKED_UP_FIRST = ("Organization", "Location")
#: the types whose SATUSEHAT id is their IHS number, looked up by NIK (never sent)
LOOKED_UP_TYPES = ("Patient", "Practitioner")
_RULE = re.compile(r"RuleNumber:\s*(\d+)")
_OFFSET = re.compile(r"T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$")


def identifier_system(res_type: str, organization_id: str) -> str:
    return f"{SYS_IDS}/{res_type.lower()}/{organization_id}"


def nik_of(resource: Mapping[str, Any]) -> str | None:
    """The NIK of a Patient or Practitioner (``https://fhir.kemkes.go.id/id/nik``), if it has one."""
    for ident in resource.get("identifier") or []:
        if isinstance(ident, dict) and ident.get("system") == S.NIK and ident.get("value"):
            return str(ident["value"])
    return None


def local_ref(value: Any) -> tuple[str, str] | None:
    """("Encounter", "x") of a relative reference {"reference": "Encounter/x"}; None for anything else."""
    if not isinstance(value, dict):
        return None
    ref = value.get("reference")
    if not isinstance(ref, str) or ref.count("/") != 1 or ref.startswith(("http:", "https:", "urn:", "#")):
        return None
    res_type, res_id = ref.split("/")
    return (res_type, res_id) if res_type and res_id else None


def to_utc(value: Any) -> Any:
    """A FHIR dateTime with a time of day, in UTC with an explicit ``+00:00``; others unchanged."""
    if not isinstance(value, str) or not _OFFSET.search(value):
        return value
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    text = parsed.isoformat(timespec="seconds" if parsed.microsecond == 0 else "milliseconds")
    return text


def rule_numbers(outcome: Any) -> list[str]:
    """The ``(RuleNumber: NNNNN)`` numbers of a SATUSEHAT OperationOutcome, in order."""
    found: list[str] = []
    if isinstance(outcome, dict):
        for issue in outcome.get("issue") or []:
            text = ((issue or {}).get("details") or {}).get("text") or (issue or {}).get("diagnostics") or ""
            found += [n for n in _RULE.findall(str(text)) if n not in found]
    return found


# -- what each type depends on -------------------------------------------------------------


@dataclass(frozen=True)
class Needs:
    """The local references a resource's SATUSEHAT form needs resolved.

    ``required``: without a SATUSEHAT id for each, it is not sent (it waits, or is held);
    ``optional``: left out of the payload while unresolved (an Encounter's diagnoses, which
    SATUSEHAT gets on the Encounter's next PUT once the Conditions are there)."""

    required: tuple[tuple[str, str], ...]
    optional: tuple[tuple[str, str], ...] = ()


def _refs(values: Any, *types: str) -> list[tuple[str, str]]:
    out = []
    for v in values if isinstance(values, list) else [values]:
        ref = local_ref(v)
        if ref is not None and ref[0] in types and ref not in out:
            out.append(ref)
    return out


def needs(resource: Mapping[str, Any]) -> Needs:
    t = resource.get("resourceType")
    if t == "Organization":
        return Needs(tuple(_refs(resource.get("partOf"), "Organization")))
    if t == "Location":
        return Needs(())
    subject = _refs(resource.get("subject"), "Patient")
    if t == "Encounter":
        practitioners = _refs([p.get("individual") for p in resource.get("participant") or [] if isinstance(p, dict)], "Practitioner")
        locations = _refs([loc.get("location") for loc in resource.get("location") or [] if isinstance(loc, dict)], "Location")
        diagnoses = _refs([d.get("condition") for d in resource.get("diagnosis") or [] if isinstance(d, dict)], "Condition")
        return Needs((*subject, *practitioners, *locations), tuple(diagnoses))
    encounter = _refs(resource.get("encounter"), "Encounter")
    if t == "Procedure":
        performers = _refs([p.get("actor") for p in resource.get("performer") or [] if isinstance(p, dict)], "Practitioner")
        return Needs((*subject, *encounter), tuple(performers))
    if t == "Observation":
        return Needs((*subject, *encounter), tuple(_refs(resource.get("performer"), "Practitioner")))
    return Needs((*subject, *encounter))


def is_sub_unit(resource: Mapping[str, Any]) -> bool:
    """An Organization part of another (a facility's poli, unit, department): synced. One without
    ``partOf`` is a facility itself, which SATUSEHAT has already (its Master Sarana Index id)."""
    return resource.get("resourceType") == "Organization" and bool(_refs(resource.get("partOf"), "Organization"))


def patient_of(resource: Mapping[str, Any]) -> str | None:
    """The local Patient id a resource is about (the partition its work is done in)."""
    ref = local_ref(resource.get("subject"))
    return ref[1] if ref is not None and ref[0] == "Patient" else None


# -- what SATUSEHAT would refuse -----------------------------------------------------------


def _has_coding(concept: Any, system: str | None = None) -> bool:
    codings = (concept or {}).get("coding") if isinstance(concept, dict) else None
    return any(isinstance(c, dict) and c.get("code") and (system is None or c.get("system") == system) for c in codings or [])


def hold_reason(resource: Mapping[str, Any]) -> str | None:
    """Why SATUSEHAT's rules would refuse ``resource`` (None: nothing we know of)."""
    t = resource.get("resourceType")
    if t == "Organization":
        return None if resource.get("name") else "Organization has no name (SATUSEHAT: name is required)"
    if t == "Location":
        if not resource.get("name"):
            return "Location has no name (SATUSEHAT: name is required)"
        pos = resource.get("position") or {}
        if pos.get("latitude") is None or pos.get("longitude") is None:
            return "Location has no position.latitude/longitude (SATUSEHAT: position is required)"
        return None
    if not _refs(resource.get("subject"), "Patient"):
        return f"{t} has no subject Patient reference (SATUSEHAT: subject is required)"
    if t == "Encounter":
        return _encounter_hold(resource)
    if not _refs(resource.get("encounter"), "Encounter"):
        return f"{t} has no encounter reference (SATUSEHAT: encounter is required, rule 10126)"
    if not _has_coding(resource.get("code")):
        return f"{t} has no coded code (SATUSEHAT: code is required, rule 10125)"
    if t == "Condition":
        diagnosis = any(
            _has_coding(c) and any(x.get("code") == "encounter-diagnosis" for x in c["coding"]) for c in resource.get("category") or []
        )
        if diagnosis and not _has_coding(resource.get("code"), ICD10):
            return "a diagnosis (category encounter-diagnosis) needs an ICD-10 code (system http://hl7.org/fhir/sid/icd-10)"
    if t == "Observation":
        q = resource.get("valueQuantity")
        if isinstance(q, dict) and (q.get("system") != UCUM or not q.get("code")):
            return "Observation.valueQuantity needs a UCUM system and code (SATUSEHAT rule 10012)"
    return None


def _encounter_hold(resource: Mapping[str, Any]) -> str | None:
    period = resource.get("period") or {}
    start, end = period.get("start"), period.get("end")
    if not start:
        return "Encounter has no period.start (SATUSEHAT: period is required)"
    if resource.get("status") == "finished":
        if not end:
            return "a finished Encounter needs period.end (SATUSEHAT rule 10121)"
        if str(to_utc(end)) <= str(to_utc(start)):
            return "Encounter period.end is not after period.start (SATUSEHAT rule 10173)"
    if not resource.get("class"):
        return "Encounter has no class (SATUSEHAT: class is required)"
    if not needs(resource).required or not _refs([loc.get("location") for loc in resource.get("location") or []], "Location"):
        return "Encounter has no location (SATUSEHAT rule 10120: location is required)"
    participants = [p.get("individual") for p in resource.get("participant") or [] if isinstance(p, dict)]
    if not _refs(participants, "Practitioner"):
        return "Encounter has no participant Practitioner (SATUSEHAT rule 10119)"
    return None


# -- the payload ---------------------------------------------------------------------------

_DROP = ("id", "meta", "text", "contained", "identifier")


def payload(
    resource: Mapping[str, Any], organization_id: str, ids: Mapping[tuple[str, str], str], satusehat_id: str | None
) -> dict[str, Any]:
    """The body to send: ``ids`` maps local references to SATUSEHAT ids (every required one must
    be there; optional ones missing are left out), ``satusehat_id`` is given for a PUT."""
    t = str(resource["resourceType"])
    out: dict[str, Any] = {k: copy.deepcopy(v) for k, v in resource.items() if k not in _DROP}
    if satusehat_id is not None:
        out["id"] = satusehat_id
    out["identifier"] = [{"system": identifier_system(t, organization_id), "use": "official", "value": str(resource["id"])}]

    def rewrite(ref: Any) -> dict[str, Any] | None:
        local = local_ref(ref)
        if local is None or local not in ids:
            return None
        return {"reference": f"{local[0]}/{ids[local]}", **({"display": ref["display"]} if ref.get("display") else {})}

    if t == "Organization":
        # a sub-unit: part of the facility, or of another sub-unit (``ids`` maps the facility's own
        # local Organization to its SATUSEHAT id too)
        out["partOf"] = rewrite(resource.get("partOf")) or {"reference": f"Organization/{organization_id}"}
        out.pop("endpoint", None)
        return out
    if t == "Location":
        out["managingOrganization"] = {"reference": f"Organization/{organization_id}"}
        out.pop("partOf", None)
        return out
    out["subject"] = rewrite(resource.get("subject"))
    if t == "Encounter":
        out["serviceProvider"] = {"reference": f"Organization/{organization_id}"}
        out["participant"] = [_participant(p, rewrite) for p in resource.get("participant") or [] if rewrite(p.get("individual"))]
        out["location"] = [
            {**loc, "location": rewrite(loc.get("location"))} for loc in resource.get("location") or [] if rewrite(loc.get("location"))
        ]
        diagnoses = [
            {**d, "condition": rewrite(d.get("condition"))} for d in resource.get("diagnosis") or [] if rewrite(d.get("condition"))
        ]
        if diagnoses:
            out["diagnosis"] = diagnoses
        else:
            out.pop("diagnosis", None)
        out["period"] = {k: to_utc(v) for k, v in (resource.get("period") or {}).items()}
        out["statusHistory"] = _status_history(resource)
        for key in ("episodeOfCare", "basedOn", "appointment", "account", "partOf", "reasonReference"):
            out.pop(key, None)
        return out
    out["encounter"] = rewrite(resource.get("encounter"))
    for key in ("onsetDateTime", "abatementDateTime", "recordedDate", "effectiveDateTime", "issued", "performedDateTime"):
        if key in out:
            out[key] = to_utc(out[key])
    for key in ("effectivePeriod", "performedPeriod"):
        if isinstance(out.get(key), dict):
            out[key] = {k: to_utc(v) for k, v in out[key].items()}
    if t == "Procedure":
        performers = [{**p, "actor": rewrite(p.get("actor"))} for p in resource.get("performer") or [] if rewrite(p.get("actor"))]
        out.pop("performer", None)
        if performers:
            out["performer"] = performers
    if t == "Observation":
        performers = [r for r in (rewrite(p) for p in resource.get("performer") or []) if r]
        out.pop("performer", None)
        if performers:
            out["performer"] = performers
    for key in ("recorder", "asserter", "basedOn", "partOf", "hasMember", "derivedFrom", "specimen", "device", "focus", "evidence"):
        out.pop(key, None)
    return out


def _participant(p: dict[str, Any], rewrite: Any) -> dict[str, Any]:
    kind = p.get("type") or [{"coding": [{"system": PARTICIPATION, "code": "ATND", "display": "attender"}]}]
    return {**p, "type": kind, "individual": rewrite(p.get("individual"))}


def _status_history(resource: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The statusHistory SATUSEHAT wants (arrived, in-progress, finished with periods): the local
    one in UTC, or, when there is none, one derived from status and period (docs/satusehat.md)."""
    given = resource.get("statusHistory")
    if given:
        return [{**h, "period": {k: to_utc(v) for k, v in (h.get("period") or {}).items()}} for h in given]
    period = resource.get("period") or {}
    start, end = to_utc(period.get("start")), to_utc(period.get("end"))
    status = resource.get("status")
    if status == "finished":
        return [
            {"status": "arrived", "period": {"start": start, "end": start}},
            {"status": "in-progress", "period": {"start": start, "end": end}},
            {"status": "finished", "period": {"start": end, "end": end}},
        ]
    if status == "in-progress":
        return [{"status": "arrived", "period": {"start": start, "end": start}}, {"status": "in-progress", "period": {"start": start}}]
    return [{"status": status, "period": {"start": start}}]
