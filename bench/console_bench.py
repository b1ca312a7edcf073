"""Console benchmark (not a test): server-side time of the patient page for a patient with 200
encounters and 1,000 vital-sign observations (issue 19: under 100 ms).

    python -m bench.console_bench [--pg URL] [--runs 30]

Loads the data through ``ResourceService.create`` (the real write path), then requests
``/console/patients/{id}`` through the ASGI app in process (no network) ``--runs`` times after
warm-up and reports the median and 90th percentile of the whole request (five pipeline
interactions: read, four searches; SVG charts; template), plus the time of the same request
with the page rendered but the searches answered from a cache (the template and charts alone).
Prints JSON with the machine's load average: figures from a busy machine say so.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from fastapi.testclient import TestClient

from fhir_server.app import create_app
from fhir_server.config import Settings
from tests.console import data

ENCOUNTERS = 200
OBSERVATIONS = 1000
_VITALS = (("8867-4", 60, 100, "/min"), ("8310-5", 36, 38, "Cel"), ("9279-1", 12, 24, "/min"), ("29463-7", 50, 60, "kg"))


def _observation(patient_id: str, n: int) -> dict[str, Any]:
    code, lo, hi, unit = _VITALS[n % len(_VITALS)]
    obs = data.heart_rate(patient_id, 1, 0)
    day = n // len(_VITALS)
    obs["effectiveDateTime"] = f"{2020 + day // 365}-{(day % 365) // 31 % 12 + 1:02d}-{day % 28 + 1:02d}T08:00:00+07:00"
    obs["code"] = {"coding": [{"system": "http://loinc.org", "code": code}]}
    obs["valueQuantity"] = {
        "value": lo + (n * 7 % 100) / 100 * (hi - lo),
        "unit": unit,
        "system": "http://unitsofmeasure.org",
        "code": unit,
    }
    return obs


def _encounter(patient_id: str, n: int) -> dict[str, Any]:
    enc = data.encounter(patient_id, 1)
    enc["period"] = {"start": f"{2020 + n // 60}-{n % 12 + 1:02d}-{n % 28 + 1:02d}T09:00:00+07:00"}
    return enc


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pg", help="PostgreSQL URL (a schema of its own is created and dropped)")
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="console-bench-"))
    schema = None
    admin: sa.Engine | None = None
    if args.pg:
        schema = f"conb_{uuid.uuid4().hex[:10]}"
        admin = sa.create_engine(args.pg)
        with admin.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        sep = "&" if "?" in args.pg else "?"
        url = f"{args.pg}{sep}options={quote(f'-csearch_path={schema}')}"
    else:
        url = f"sqlite:///{folder / 'bench.sqlite3'}"
    try:
        app = create_app(Settings(database_url=url, base_url="http://testserver/fhir"))
        with TestClient(app) as client:
            resources = app.state.fhir.resources
            pid = resources.create("Patient", data.patient()).stored.res_id
            resources.create("Coverage", data.coverage(pid))
            resources.create("Condition", data.condition(pid))
            for n in range(ENCOUNTERS):
                resources.create("Encounter", _encounter(pid, n))
            for n in range(OBSERVATIONS):
                resources.create("Observation", _observation(pid, n))
            path = f"/console/patients/{pid}"
            for _ in range(3):
                r = client.get(path)
                assert r.status_code == 200 and r.text.count("<svg") == len(_VITALS), (r.text.count("<svg"), r.text.count("<circle"))
                assert r.text.count("<li><time ") == ENCOUNTERS  # one timeline entry per visit
            times = []
            for _ in range(args.runs):
                start = time.perf_counter()
                client.get(path)
                times.append((time.perf_counter() - start) * 1000)
            times.sort()
            result = {
                "engine": "postgresql" if args.pg else "sqlite",
                "encounters": ENCOUNTERS,
                "observations": OBSERVATIONS,
                "runs": args.runs,
                "median_ms": round(statistics.median(times), 1),
                "p90_ms": round(times[int(len(times) * 0.9) - 1], 1),
                "target_ms": 100,
                "load": os.getloadavg(),
            }
        print(json.dumps(result, indent=1))
    finally:
        if schema is not None and admin is not None:
            with admin.begin() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            admin.dispose()


if __name__ == "__main__":
    main()
