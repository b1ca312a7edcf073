"""Synthetic, Synthea-like Indonesian test data (generated locally, deterministic per seed)."""

from __future__ import annotations

import random
from typing import Any

NIK_SYSTEM = "https://fhir.kemkes.go.id/id/nik"
GIVEN = ["Siti", "Budi", "Agus", "Dewi", "Rina", "Joko", "Putri", "Wahyu", "Sri", "Andi", "Nur", "Ayu", "Eko", "Fitri", "Hadi"]
FAMILY = ["Aminah", "Santoso", "Wijaya", "Lestari", "Saputra", "Hidayat", "Kusuma", "Pratama", "Rahayu", "Siregar",
          "Nasution", "Harahap", "Simanjuntak", "Sihombing", "Gunawan", "Halim", "Tanjung", "Purba", "Sinaga", "Lubis"]
REGIONS = [("32", "3204", "320415", "3204152001"), ("31", "3171", "317101", "3171011001"), ("35", "3578", "357801", "3578011001")]


def nik(rng: random.Random, female: bool, birth: tuple[int, int, int], region: str) -> str:
    y, m, d = birth
    return f"{region}{d + 40 if female else d:02d}{m:02d}{y % 100:02d}{rng.randint(1, 9999):04d}"


def patient(rng: random.Random, n: int) -> dict[str, Any]:
    female = rng.random() < 0.5
    birth = (rng.randint(1940, 2023), rng.randint(1, 12), rng.randint(1, 28))
    prov, city, district, village = rng.choice(REGIONS)
    given, family = rng.choice(GIVEN), rng.choice(FAMILY) + (str(n % 97) if n % 3 == 0 else "")
    return {
        "resourceType": "Patient",
        "meta": {"profile": ["https://fhir.kemkes.go.id/r4/StructureDefinition/Patient"]},
        "identifier": [{"use": "official", "system": NIK_SYSTEM, "value": nik(rng, female, birth, district)}],
        "active": True,
        "name": [{"use": "official", "text": f"{given} {family}", "family": family, "given": [given]}],
        "telecom": [{"system": "phone", "value": f"08{rng.randint(10**9, 10**10 - 1)}", "use": "mobile"}],
        "gender": "female" if female else "male",
        "birthDate": f"{birth[0]:04d}-{birth[1]:02d}-{birth[2]:02d}",
        "address": [{
            "use": "home", "line": [f"Jl. Merdeka No. {rng.randint(1, 200)}"], "city": "Bandung", "country": "ID",
            "extension": [{
                "url": "https://fhir.kemkes.go.id/r4/StructureDefinition/administrativeCode",
                "extension": [
                    {"url": "province", "valueCode": prov}, {"url": "city", "valueCode": city},
                    {"url": "district", "valueCode": district}, {"url": "village", "valueCode": village},
                    {"url": "rt", "valueCode": f"{rng.randint(1, 20):03d}"}, {"url": "rw", "valueCode": f"{rng.randint(1, 20):03d}"},
                ],
            }],
        }],
        "maritalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "code": rng.choice("SMWD")}]},
    }


def encounter(rng: random.Random, patient_id: str) -> dict[str, Any]:
    day = rng.randint(1, 28)
    return {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": rng.choice(["AMB", "IMP"]), "display": "ambulatory"},
        "subject": {"reference": f"Patient/{patient_id}"},
        "period": {"start": f"2026-03-{day:02d}T08:00:00+07:00", "end": f"2026-03-{day:02d}T09:30:00+07:00"},
    }
