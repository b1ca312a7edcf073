"""How long ``Patient/$merge`` takes when many resources refer to the source (not a test).

    python -m bench.mpi_merge_bench [--referrers 5000] [--pg URL]

Creates two Patients and ``--referrers`` Encounters of the source (in transaction Bundles of 500;
one in five also names it in an extension, one in ten in a contained resource), then times
``POST Patient/$merge`` through the ASGI app in-process (preview, then the merge itself: every
Encounter rewritten in the one transaction) and ``$unmerge``. Prints JSON with the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from fastapi.testclient import TestClient

from bench.mpi_bench import _database
from fhir_server.app import create_app
from fhir_server.config import Settings

JSON = {"Content-Type": "application/fhir+json"}
AMB = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}
EXT = "https://example.org/fhir/StructureDefinition/related-patient"


def _encounter(n: int, source: str) -> dict[str, Any]:
    enc: dict[str, Any] = {"resourceType": "Encounter", "status": "finished", "class": AMB, "subject": {"reference": f"Patient/{source}"}}
    if n % 5 == 0:
        enc["extension"] = [{"url": EXT, "valueReference": {"reference": f"Patient/{source}"}}]
    if n % 10 == 0:
        enc["contained"] = [{"resourceType": "RelatedPerson", "id": "rp", "patient": {"reference": f"Patient/{source}"}}]
        enc["participant"] = [{"individual": {"reference": "#rp"}}]
    return enc


def _post(client: TestClient, path: str, body: dict[str, Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    r = client.post(path, content=orjson.dumps(body), headers=JSON)
    elapsed = time.perf_counter() - t0
    assert r.status_code in (200, 201), r.text[:500]
    return elapsed, r.json()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--referrers", type=int, default=5000)
    ap.add_argument("--pg", default=None, help="PostgreSQL URL: a throw-away schema in it (default: SQLite in a temporary folder)")
    args = ap.parse_args()
    result: dict[str, Any] = {"engine": "postgresql" if args.pg else "sqlite", "referrers": args.referrers, "load_before": os.getloadavg()}
    with tempfile.TemporaryDirectory() as folder, _database(args.pg, Path(folder)) as (_, url):
        app = create_app(Settings(database_url=url, base_url="http://bench/fhir"))
        with TestClient(app) as client:
            _, target = _post(client, "/fhir/Patient", {"resourceType": "Patient", "name": [{"text": "Siti Aminah"}]})
            _, source = _post(client, "/fhir/Patient", {"resourceType": "Patient", "name": [{"text": "SITI AMINAH"}]})
            for start in range(0, args.referrers, 500):
                entries = [
                    {"resource": _encounter(n, source["id"]), "request": {"method": "POST", "url": "Encounter"}}
                    for n in range(start, min(args.referrers, start + 500))
                ]
                _post(client, "/fhir", {"resourceType": "Bundle", "type": "transaction", "entry": entries})
            params = [
                {"name": "source-patient", "valueReference": {"reference": f"Patient/{source['id']}"}},
                {"name": "target-patient", "valueReference": {"reference": f"Patient/{target['id']}"}},
            ]
            preview, _ = _post(
                client,
                "/fhir/Patient/$merge",
                {"resourceType": "Parameters", "parameter": [*params, {"name": "preview", "valueBoolean": True}]},
            )
            cpu0 = time.process_time()
            merge, merged = _post(client, "/fhir/Patient/$merge", {"resourceType": "Parameters", "parameter": params})
            result["merge_cpu_seconds"] = round(time.process_time() - cpu0, 2)
            text = next(p["resource"] for p in merged["parameter"] if p["name"] == "outcome")["issue"][-1]["diagnostics"]
            provenance = text.split("Provenance/")[1].split(" ")[0]
            unmerge, _ = _post(
                client,
                "/fhir/Patient/$unmerge",
                {
                    "resourceType": "Parameters",
                    "parameter": [{"name": "provenance", "valueReference": {"reference": f"Provenance/{provenance}"}}],
                },
            )
            result.update(
                preview_seconds=round(preview, 2),
                merge_seconds=round(merge, 2),
                merge_per_referrer_ms=round(merge / args.referrers * 1000, 2),
                unmerge_seconds=round(unmerge, 2),
                outcome=text,
            )
    result["load_after"] = os.getloadavg()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
