"""Patients for the MPI's HTTP and storage tests."""

from __future__ import annotations

from typing import Any

NIK = "https://fhir.kemkes.go.id/id/nik"
NIK_IBU = "https://fhir.kemkes.go.id/id/nik-ibu"
BPJS = "https://fhir-server.id/id/bpjs-kartu"
ADMIN = "https://fhir.kemkes.go.id/r4/StructureDefinition/administrativeCode"
MATCH_GRADE = "http://hl7.org/fhir/StructureDefinition/match-grade"
SITI_NIK = "3204154506900003"


def patient(name: str, *, nik: str | None = None, birth: str | None = None, gender: str | None = None, **more: Any) -> dict[str, Any]:
    ids = [{"system": NIK, "value": nik}] if nik else []
    if more.get("ibu"):
        ids.append({"system": NIK_IBU, "value": more["ibu"]})
    if more.get("bpjs"):
        ids.append({"system": BPJS, "value": more["bpjs"]})
    res: dict[str, Any] = {"resourceType": "Patient", "name": [{"text": name}]}
    if ids:
        res["identifier"] = ids
    if birth:
        res["birthDate"] = birth
    if gender:
        res["gender"] = gender
    if more.get("phone"):
        res["telecom"] = [{"system": "phone", "value": more["phone"]}]
    if more.get("village"):
        sub = [{"url": "village", "valueCode": more["village"]}, {"url": "rt", "valueCode": "002"}, {"url": "rw", "valueCode": "005"}]
        res["address"] = [{"extension": [{"url": ADMIN, "extension": sub}]}]
    return res


SITI = patient(
    "Hj. Siti Aminah binti Abdullah", nik=SITI_NIK, birth="1990-06-05", gender="female", phone="081200000001", village="3204152003"
)


def parameters(resource: dict[str, Any], **more: Any) -> dict[str, Any]:
    params: list[dict[str, Any]] = [{"name": "resource", "resource": resource}]
    if "only_certain" in more:
        params.append({"name": "onlyCertainMatches", "valueBoolean": more["only_certain"]})
    if "count" in more:
        params.append({"name": "count", "valueInteger": more["count"]})
    return {"resourceType": "Parameters", "parameter": params}


def grade(entry: dict[str, Any]) -> str:
    return next(e["valueCode"] for e in entry["search"]["extension"] if e["url"] == MATCH_GRADE)
