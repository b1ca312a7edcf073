"""Synthetic, Synthea-like Indonesian test data (generated locally, deterministic).

Every Patient is a pure function of its number ``n`` (and the seed), so any
Patient of a large preload can be regenerated to pick search values without
keeping the whole data set in memory. NIKs are unique per ``n``.
"""

from __future__ import annotations

import random
import uuid
from typing import Any

NIK_SYSTEM = "https://fhir.kemkes.go.id/id/nik"
BPJS_SYSTEM = "https://fhir.kemkes.go.id/id/bpjs"
GIVEN = ["Siti", "Budi", "Agus", "Dewi", "Rina", "Joko", "Putri", "Wahyu", "Sri", "Andi", "Nur", "Ayu", "Eko", "Fitri", "Hadi"]
FAMILY = [
    "Aminah",
    "Santoso",
    "Wijaya",
    "Lestari",
    "Saputra",
    "Hidayat",
    "Kusuma",
    "Pratama",
    "Rahayu",
    "Siregar",
    "Nasution",
    "Harahap",
    "Simanjuntak",
    "Sihombing",
    "Gunawan",
    "Halim",
    "Tanjung",
    "Purba",
    "Sinaga",
    "Lubis",
]
REGIONS = [("32", "3204", "320415", "3204152001"), ("31", "3171", "317101", "3171011001"), ("35", "3578", "357801", "3578011001")]
# (ICD-10 code, display)
CONDITIONS = [
    ("J06.9", "Acute upper respiratory infection, unspecified"),
    ("I10", "Essential (primary) hypertension"),
    ("E11.9", "Type 2 diabetes mellitus without complications"),
    ("A09", "Diarrhoea and gastroenteritis"),
    ("K30", "Dyspepsia"),
    ("A01.0", "Typhoid fever"),
    ("A91", "Dengue haemorrhagic fever"),
    ("M54.5", "Low back pain"),
]
# (LOINC code, display, unit, low, high)
VITALS = [
    ("8867-4", "Heart rate", "/min", 55, 110),
    ("9279-1", "Respiratory rate", "/min", 12, 24),
    ("8310-5", "Body temperature", "Cel", 36, 39),
    ("29463-7", "Body weight", "kg", 8, 95),
    ("8480-6", "Systolic blood pressure", "mm[Hg]", 95, 170),
]
SEED = 42


def rng_for(n: int, seed: int = SEED) -> random.Random:
    return random.Random(seed * 1_000_003 + n)


def nik(n: int, female: bool, birth: tuple[int, int, int]) -> str:
    """16 digits: 6 region digits, DDMMYY (+40 on the day for women), 4 serial digits; unique per n."""
    y, m, d = birth
    region = 110101 + n // 10_000
    return f"{region:06d}{d + 40 if female else d:02d}{m:02d}{y % 100:02d}{n % 10_000:04d}"


def patient(n: int, seed: int = SEED) -> dict[str, Any]:
    rng = rng_for(n, seed)
    female = rng.random() < 0.5
    birth = (rng.randint(1940, 2023), rng.randint(1, 12), rng.randint(1, 28))
    prov, city, district, village = rng.choice(REGIONS)
    given, family = rng.choice(GIVEN), rng.choice(FAMILY) + (str(n % 97) if n % 3 == 0 else "")
    return {
        "resourceType": "Patient",
        "meta": {"profile": ["https://fhir.kemkes.go.id/r4/StructureDefinition/Patient"]},
        "identifier": [{"use": "official", "system": NIK_SYSTEM, "value": nik(n, female, birth)}],
        "active": True,
        "name": [{"use": "official", "text": f"{given} {family}", "family": family, "given": [given]}],
        "telecom": [{"system": "phone", "value": f"08{rng.randint(10**9, 10**10 - 1)}", "use": "mobile"}],
        "gender": "female" if female else "male",
        "birthDate": f"{birth[0]:04d}-{birth[1]:02d}-{birth[2]:02d}",
        "address": [
            {
                "use": "home",
                "line": [f"Jl. Merdeka No. {rng.randint(1, 200)}"],
                "city": "Bandung",
                "country": "ID",
                "extension": [
                    {
                        "url": "https://fhir.kemkes.go.id/r4/StructureDefinition/administrativeCode",
                        "extension": [
                            {"url": "province", "valueCode": prov},
                            {"url": "city", "valueCode": city},
                            {"url": "district", "valueCode": district},
                            {"url": "village", "valueCode": village},
                            {"url": "rt", "valueCode": f"{rng.randint(1, 20):03d}"},
                            {"url": "rw", "valueCode": f"{rng.randint(1, 20):03d}"},
                        ],
                    }
                ],
            }
        ],
        "maritalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "code": rng.choice("SMWU")}]},
    }


def nik_of(p: dict[str, Any]) -> str:
    return p["identifier"][0]["value"]


def _ref(target: str) -> dict[str, str]:
    return {"reference": target}


def encounter(rng: random.Random, subject: str, index: int = 0) -> dict[str, Any]:
    month, day = rng.randint(1, 12), rng.randint(1, 28)
    hour = rng.randint(7, 15)
    cls = rng.choice([("AMB", "ambulatory"), ("AMB", "ambulatory"), ("IMP", "inpatient encounter"), ("EMER", "emergency")])
    return {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": cls[0], "display": cls[1]},
        "subject": _ref(subject),
        "period": {
            "start": f"2025-{month:02d}-{day:02d}T{hour:02d}:00:00+07:00",
            "end": f"2025-{month:02d}-{day:02d}T{hour + 1:02d}:30:00+07:00",
        },
    }


def condition(rng: random.Random, subject: str, encounter_ref: str) -> dict[str, Any]:
    code, display = rng.choice(CONDITIONS)
    return {
        "resourceType": "Condition",
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-category",
                        "code": "encounter-diagnosis",
                        "display": "Encounter Diagnosis",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": code, "display": display}], "text": display},
        "subject": _ref(subject),
        "encounter": _ref(encounter_ref),
        "recordedDate": "2025-06-01T09:00:00+07:00",
    }


def observation(rng: random.Random, subject: str, encounter_ref: str) -> dict[str, Any]:
    code, display, unit, low, high = rng.choice(VITALS)
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": display}]},
        "subject": _ref(subject),
        "encounter": _ref(encounter_ref),
        "effectiveDateTime": "2025-06-01T09:00:00+07:00",
        "valueQuantity": {"value": rng.randint(low, high), "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
    }


def coverage(rng: random.Random, subject: str, n: int) -> dict[str, Any]:
    return {
        "resourceType": "Coverage",
        "status": "active",
        "identifier": [{"system": BPJS_SYSTEM, "value": f"{n:013d}"}],
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PUBLICPOL"}], "text": "JKN"},
        "beneficiary": _ref(subject),
        "payor": [{"display": "BPJS Kesehatan"}],
        "class": [
            {
                "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/coverage-class", "code": "plan"}]},
                "value": rng.choice(["PBI", "PBPU", "PPU"]),
                "name": "Kelas " + rng.choice("123"),
            }
        ],
    }


def _urn(rng: random.Random) -> str:
    return f"urn:uuid:{uuid.UUID(int=rng.getrandbits(128), version=4)}"


def _post(full_url: str, resource: dict[str, Any], if_none_exist: str | None = None) -> dict[str, Any]:
    request: dict[str, Any] = {"method": "POST", "url": resource["resourceType"]}
    if if_none_exist:
        request["ifNoneExist"] = if_none_exist
    return {"fullUrl": full_url, "resource": resource, "request": request}


def bundle(entries: list[dict[str, Any]], kind: str = "transaction") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": entries}


def preload_entries(n: int, encounters: int = 3, extras: bool = True, seed: int = SEED) -> list[dict[str, Any]]:
    """One Patient with ``encounters`` Encounters (and, with ``extras``, a Condition and a Coverage)."""
    rng = rng_for(n, seed + 1)
    p = patient(n, seed)
    pu = _urn(rng)
    out = [_post(pu, p)]
    first_enc = None
    for i in range(encounters):
        eu = _urn(rng)
        first_enc = first_enc or eu
        out.append(_post(eu, encounter(rng, pu, i)))
    if extras:
        if first_enc:
            out.append(_post(_urn(rng), condition(rng, pu, first_enc)))
        out.append(_post(_urn(rng), coverage(rng, pu, n)))
    return out


def visit_bundle(n: int, visits: int = 8, seed: int = SEED) -> dict[str, Any]:
    """A Synthea-like transaction of 2 + 6 * visits entries (50 for 8 visits): the Patient (conditional
    create on the NIK), a Coverage, and per visit an Encounter, 2 Conditions and 3 Observations, all
    linked by urn:uuid references."""
    rng = rng_for(n, seed + 2)
    p = patient(n, seed)
    pu = _urn(rng)
    entries = [_post(pu, p, f"identifier={NIK_SYSTEM}|{nik_of(p)}"), _post(_urn(rng), coverage(rng, pu, n))]
    for i in range(visits):
        eu = _urn(rng)
        entries.append(_post(eu, encounter(rng, pu, i)))
        entries += [_post(_urn(rng), condition(rng, pu, eu)) for _ in range(2)]
        entries += [_post(_urn(rng), observation(rng, pu, eu)) for _ in range(3)]
    return bundle(entries)
