"""Master patient index benchmark (not a test): ``Patient/$match`` latency and the duplicate scan's
speed with N synthetic Indonesian Patients (tests/mpi/synthetic.py: variants, twins, newborns...).

    python -m bench.mpi_bench [--patients 100000] [--queries 1000] [--pg URL] [--no-scan]

Loads the Patients through ``ResourceService.create_in`` (the real write path: validation, index
rows, blocking keys), 1,000 per transaction; then times ``MpiService.match`` for ``--queries``
records drawn from the population (service level: candidates, scoring, ranking; no HTTP) and
``POST Patient/$match`` through the ASGI app for a tenth of them; then ``DuplicateScan.run``.
Prints JSON. The machine's load average is printed with it: figures from a busy machine say so.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import sqlalchemy as sa

from fhir_server.service.indexing import index_resource, index_rows
from fhir_server.service.mpi import MpiService
from fhir_server.service.mpi_scan import DuplicateScan
from fhir_server.service.resources import ResourceService
from fhir_server.storage import migrate
from fhir_server.storage.db import Database
from tests.mpi.synthetic import population


@contextmanager
def _database(pg_url: str | None, folder: Path) -> Iterator[tuple[Database, str]]:
    if pg_url is None:
        url = f"sqlite:///{folder / 'mpi.sqlite3'}"
        db = Database.from_url(url, pool_size=2)
        migrate.upgrade(db.engine)
        try:
            yield db, url
        finally:
            db.dispose()
        return
    schema = f"mpib_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(pg_url)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in pg_url else "?"
    url = f"{pg_url}{sep}options={quote(f'-csearch_path={schema}')}"
    db = Database.from_url(url, pool_size=2)
    try:
        migrate.upgrade(db.engine)
        yield db, url
    finally:
        db.dispose()
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def _load(db: Database, records: list[dict[str, Any]]) -> float:
    service = ResourceService(db, index_resource, prepare_index=index_rows, r4b_model_check=False)
    start = time.perf_counter()
    for i in range(0, len(records), 1000):
        with db.write() as conn:
            for resource in records[i : i + 1000]:
                service.create_in(conn, "Patient", dict(resource))
    db.analyze()
    return time.perf_counter() - start


def _queries(pop_records: list[dict[str, Any]], n: int, rng: random.Random) -> list[dict[str, Any]]:
    """Queries as a registration desk sends them: a stored record's NIK or BPJS card, name and birth date."""
    out = []
    for rec in rng.sample(pop_records, n):
        q = {k: v for k, v in rec.items() if k in ("resourceType", "name", "birthDate", "gender", "identifier")}
        if rng.random() < 0.3:
            q.pop("identifier", None)
        if "birthDate" not in q and not q.get("identifier"):
            q["birthDate"] = "1990-01-01"
        out.append(q)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--pg", default=None, help="PostgreSQL URL (default: SQLite in a temporary folder)")
    ap.add_argument("--no-scan", action="store_true")
    args = ap.parse_args()
    rng = random.Random(18)
    people = max(1, int(args.patients / 1.66))  # the generator makes ~1.66 records per base person
    records = [r.resource for r in population(18, people).records][: args.patients]
    result: dict[str, Any] = {"engine": "postgresql" if args.pg else "sqlite", "patients": len(records), "load_before": os.getloadavg()}
    with tempfile.TemporaryDirectory() as folder, _database(args.pg, Path(folder)) as (db, url):
        result["load_seconds"] = round(_load(db, records), 1)
        mpi = MpiService(db)
        queries = _queries(records, args.queries, rng)
        times, found, limited = [], 0, 0
        for q in queries:
            t0 = time.perf_counter()
            outcome = mpi.match(q)
            times.append((time.perf_counter() - t0) * 1000)
            found += bool(outcome.matches)
            limited += bool(outcome.limited_keys)
        result["match_service_ms"] = {
            "p50": round(_percentile(times, 50), 2),
            "p95": round(_percentile(times, 95), 2),
            "max": round(max(times), 2),
        }
        result["match_found_share"] = round(found / len(queries), 3)
        result["match_limited_share"] = round(limited / len(queries), 3)

        from fastapi.testclient import TestClient

        from fhir_server.app import create_app
        from fhir_server.config import Settings

        app = create_app(Settings(database_url=url, base_url="http://bench/fhir", audit=False))
        with TestClient(app) as client:
            http_times = []
            for q in queries[: max(1, len(queries) // 10)]:
                body = orjson.dumps({"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": q}]})
                t0 = time.perf_counter()
                r = client.post("/fhir/Patient/$match", content=body, headers={"Content-Type": "application/fhir+json"})
                http_times.append((time.perf_counter() - t0) * 1000)
                assert r.status_code == 200, r.text
        result["match_http_inprocess_ms"] = {"p50": round(_percentile(http_times, 50), 2), "p95": round(_percentile(http_times, 95), 2)}
        if not args.no_scan:
            t0 = time.perf_counter()
            summary = DuplicateScan(db).run(restart=True)
            result["scan_seconds"] = round(time.perf_counter() - t0, 1)
            result["scan_pairs_compared"] = summary.compared
            result["scan_pairs_recorded"] = summary.pairs
            result["scan_limited_keys"] = len(summary.limited_keys)
        with db.read() as conn:
            result["idx_mpi_rows"] = conn.execute(sa.text("SELECT count(*) FROM idx_mpi")).scalar_one()
    result["load_after"] = os.getloadavg()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
