"""Master patient index benchmark (not a test): ``Patient/$match`` latency and the duplicate scan's
speed with N synthetic Indonesian Patients (tests/mpi/synthetic.py: variants, twins, newborns...).

    python -m bench.mpi_bench [--patients 100000] [--queries 1000] [--pg URL | --db-url URL] [--no-scan]
    # a million on PostgreSQL, in a database of its own, kept for later runs:
    createdb -h 127.0.0.1 -U postgres mpi1m
    python -m bench.mpi_bench --patients 1000000 --db-url postgresql+psycopg://postgres@127.0.0.1/mpi1m --http --no-scan
    python -m bench.mpi_bench --patients 1000000 --db-url ... --skip-load --http   # measure again

Loads the Patients through ``ResourceService.create_in`` (the real write path less validation:
index rows, blocking keys, version rows, change log), 1,000 per transaction, each transaction's
rows written by the storage layer's bulk path (keys reserved up front, then one COPY per table on
PostgreSQL, ``storage/deferred.py``); on PostgreSQL the index tables' secondary indexes are dropped
for the load and built again after it (a kept database interrupted mid-load has none: rebuild them
from a freshly migrated database's ``pg_indexes``); ``--load-workers`` processes load chunks side
by side; the records are generated in chunks (``synthetic.stream``, one village per 800 Patients)
so a million need not fit in memory. Then times ``MpiService.match`` for
``--queries`` records drawn from the population's first chunk (service level: candidates,
scoring, ranking; no HTTP), ``POST Patient/$match`` for ``--http-queries`` of them (a tenth by
default; ``--http``: to a real server process over
loopback HTTP, audit on, as deployed; otherwise through the ASGI app in-process), and
``DuplicateScan.run``. Prints JSON. The machine's load average is printed with it: figures from a
busy machine say so.

``--pg URL`` makes a throw-away schema in that database; ``--db-url URL`` uses (and keeps) the
given database, so ``--skip-load`` can measure again without loading.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import random
import sys
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
from fhir_server.service.resources import Prepared, ResourceService
from fhir_server.storage import migrate
from fhir_server.storage.db import Database
from fhir_server.storage.repository import reserve_pks
from tests.mpi.synthetic import stream

_SEED = 18
#: base persons per generated chunk (~1.66 records each)
_CHUNK = 30_000


@contextmanager
def _database(pg_url: str | None, folder: Path, kept_url: str | None = None) -> Iterator[tuple[Database, str]]:
    if kept_url is not None:
        db = Database.from_url(kept_url, pool_size=2)
        migrate.upgrade(db.engine)
        try:
            yield db, kept_url
        finally:
            db.dispose()
        return
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


def _records(patients: int) -> Iterator[list[dict[str, Any]]]:
    """``patients`` records of the synthetic population, in chunks (deterministic)."""
    people = max(1, int(patients / 1.66)) + 1  # the generator makes ~1.66 records per base person
    left = patients
    for chunk in stream(_SEED, people, _CHUNK, villages=max(120, patients // 800)):
        if left <= 0:
            return
        yield chunk[:left]
        left -= len(chunk)


#: tables whose secondary indexes a PostgreSQL bulk load builds afterwards, by sorting, instead of
#: row by row (tens of millions of random B-tree inserts into indexes far larger than the cache)
_BULK_TABLES = ("idx_token", "idx_string", "idx_date", "idx_reference", "idx_number", "idx_quantity", "idx_uri", "idx_composite", "idx_mpi",
                "resource_versions", "change_log")  # fmt: skip


@contextmanager
def _indexes_built_after(db: Database) -> Iterator[None]:
    """PostgreSQL: drop the bulk tables' secondary indexes (not those of constraints) for the load
    and create them again after it (the same definitions, from ``pg_indexes``)."""
    if db.dialect != "postgresql":
        yield
        return
    query = (
        "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.schemaname = current_schema() AND i.tablename = ANY(:tables) "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)"
    )
    with db.engine.begin() as conn:
        indexes = list(conn.execute(sa.text(query), {"tables": list(_BULK_TABLES)}))
        for name, _ in indexes:
            conn.exec_driver_sql(f'DROP INDEX "{name}"')
    try:
        yield
    finally:
        start = time.perf_counter()
        with db.engine.begin() as conn:
            conn.exec_driver_sql("SET LOCAL maintenance_work_mem = '512MB'")
            for _, definition in indexes:
                conn.exec_driver_sql(definition)
        print(f"{len(indexes)} indexes built in {time.perf_counter() - start:.0f} s", file=sys.stderr)


def _load_part(url: str, patients: int, part: int, parts: int) -> int:
    """Load every ``parts``-th chunk from the ``part``-th (a worker process of ``_load``)."""
    db = Database.from_url(url, pool_size=1)
    try:
        return _load_chunks(db, patients, part, parts)
    finally:
        db.dispose()


def _load(db: Database, url: str, patients: int, workers: int) -> tuple[float, int]:
    """Seconds to load, and how many Patients."""
    start = time.perf_counter()
    with _indexes_built_after(db):
        if workers == 1:
            done = _load_chunks(db, patients, 0, 1)
        else:
            with multiprocessing.get_context("spawn").Pool(workers) as pool:
                done = sum(pool.starmap(_load_part, [(url, patients, w, workers) for w in range(workers)]))
    db.analyze()
    return time.perf_counter() - start, done


def _load_chunks(db: Database, patients: int, part: int, parts: int) -> int:
    service = ResourceService(db, index_resource, prepare_index=index_rows, r4b_model_check=False)
    start, done, last_report = time.perf_counter(), 0, 0
    for n, records in enumerate(_records(patients)):
        if n % parts != part:
            continue
        for i in range(0, len(records), 1000):
            batch = records[i : i + 1000]
            with db.write() as conn:
                reserve_pks(conn, len(batch))  # PostgreSQL: the rows go in with COPY at the commit
                for resource in batch:
                    # validation skipped: the generator's records are the same every run (tests/mpi load them validated)
                    service.create_in(conn, "Patient", dict(resource), prepared=Prepared(str(uuid.uuid4())))
            done += len(batch)
        if done - last_report >= 50_000:
            last_report = done
            elapsed = time.perf_counter() - start
            print(f"[{part}] loaded {done:,} in {elapsed:.0f} s ({done / elapsed:.0f}/s), load {os.getloadavg()[0]:.1f}", file=sys.stderr)
    return done


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


def _http_times(url: str, queries: list[dict[str, Any]], in_process: bool) -> list[float]:
    """Milliseconds of ``POST Patient/$match`` for each query."""
    bodies = [orjson.dumps({"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": q}]}) for q in queries]
    headers = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
    times = []
    if in_process:
        from fastapi.testclient import TestClient

        from fhir_server.app import create_app
        from fhir_server.config import Settings

        with TestClient(create_app(Settings(database_url=url, base_url="http://bench/fhir", audit=False))) as client:
            for body in bodies:
                t0 = time.perf_counter()
                r = client.post("/fhir/Patient/$match", content=body, headers=headers)
                times.append((time.perf_counter() - t0) * 1000)
                assert r.status_code == 200, r.text
        return times
    from bench.servers import free_port, our_server, running

    port = free_port()
    with (
        tempfile.TemporaryDirectory() as logs,
        running(our_server(port, url, 1), f"http://127.0.0.1:{port}/fhir/metadata", log=Path(logs) / "server.log"),
    ):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)  # one kept-alive connection, as a client library would
        for body in bodies:
            t0 = time.perf_counter()
            conn.request("POST", "/fhir/Patient/$match", body=body, headers=headers)
            response = conn.getresponse()
            text = response.read()
            times.append((time.perf_counter() - t0) * 1000)
            assert response.status == 200, text[:500]
        conn.close()
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--pg", default=None, help="PostgreSQL URL: a throw-away schema in it (default: SQLite in a temporary folder)")
    ap.add_argument("--db-url", default=None, help="a database of its own to load into and keep (e.g. made by createdb)")
    ap.add_argument("--skip-load", action="store_true", help="--db-url already holds the Patients (an earlier run)")
    ap.add_argument("--http", action="store_true", help="$match to a real server process over loopback HTTP (else in-process)")
    ap.add_argument("--http-queries", type=int, default=None, help="how many of the queries also go over HTTP (default: a tenth)")
    ap.add_argument("--load-workers", type=int, default=1, help="processes loading chunks side by side")
    ap.add_argument("--analyze", action="store_true", help="with --skip-load: refresh the planner statistics first")
    ap.add_argument("--no-scan", action="store_true")
    args = ap.parse_args()
    if args.skip_load and not args.db_url:
        ap.error("--skip-load needs --db-url")
    rng = random.Random(_SEED)
    engine = "postgresql" if (args.pg or (args.db_url or "").startswith("postgresql")) else "sqlite"
    result: dict[str, Any] = {"engine": engine, "patients": args.patients, "load_before": os.getloadavg()}
    with tempfile.TemporaryDirectory() as folder, _database(args.pg, Path(folder), args.db_url) as (db, url):
        if args.skip_load and args.analyze:
            db.analyze()
        if not args.skip_load:
            seconds, loaded = _load(db, url, args.patients, args.load_workers)
            result["load_seconds"], result["patients"] = round(seconds, 1), loaded
            result["load_rate_per_s"] = round(loaded / seconds)
        with db.read() as conn:
            result["patients_stored"] = conn.execute(sa.text("SELECT count(*) FROM resources WHERE res_type = 'Patient'")).scalar_one()
        result["load_after_loading"] = os.getloadavg()
        mpi = MpiService(db)
        records = next(_records(args.patients))  # the first chunk (made as the load made it): stored, whatever the run
        queries = _queries(records, min(args.queries, len(records)), rng)
        times, cpu_times, found, limited = [], [], 0, 0
        for q in queries:
            t0, cpu0 = time.perf_counter(), time.process_time()
            outcome = mpi.match(q)
            times.append((time.perf_counter() - t0) * 1000)
            cpu_times.append((time.process_time() - cpu0) * 1000)  # this process only, not the database server's
            found += bool(outcome.matches)
            limited += bool(outcome.limited_keys)
        result["match_service_ms"] = {
            "p50": round(_percentile(times, 50), 2),
            "p95": round(_percentile(times, 95), 2),
            "max": round(max(times), 2),
        }
        # the Python side's CPU per query: what a busy machine's wall clock hides
        result["match_service_cpu_ms"] = {"p50": round(_percentile(cpu_times, 50), 2), "p95": round(_percentile(cpu_times, 95), 2)}
        result["match_found_share"] = round(found / len(queries), 3)
        result["match_limited_share"] = round(limited / len(queries), 3)

        http_n = args.http_queries if args.http_queries is not None else max(1, len(queries) // 10)
        http_times = _http_times(url, queries[:http_n], in_process=not args.http)
        result["match_http_loopback_ms" if args.http else "match_http_inprocess_ms"] = {
            "n": len(http_times),
            "p50": round(_percentile(http_times, 50), 2),
            "p95": round(_percentile(http_times, 95), 2),
            "max": round(max(http_times), 2),
        }
        if not args.no_scan:
            t0, cpu0 = time.perf_counter(), time.process_time()
            summary = DuplicateScan(db).run(restart=True)
            result["scan_seconds"] = round(time.perf_counter() - t0, 1)
            # on a machine shared with other jobs the wall clock says little; this process's CPU
            # time does (SQLite: all of the scan's work; PostgreSQL: plus the server's share)
            result["scan_cpu_seconds_this_process"] = round(time.process_time() - cpu0, 1)
            result["scan_pairs_compared"] = summary.compared
            result["scan_pairs_recorded"] = summary.pairs
            result["scan_limited_keys"] = len(summary.limited_keys)
        with db.read() as conn:
            result["idx_mpi_rows"] = conn.execute(sa.text("SELECT count(*) FROM idx_mpi")).scalar_one()
    result["load_after"] = os.getloadavg()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
