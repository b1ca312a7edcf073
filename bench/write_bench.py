"""In-process micro-benchmark of the write path (not a test).

Prints µs per create (``ResourceService.create`` of a generated Patient) and
per 50-entry visit transaction (``BundleService.process``, the ``ingest``
scenario's Bundle), best of several runs, on SQLite (a temporary file) and,
with ``--pg URL``, PostgreSQL (a throw-away schema); then the cost of the
pure-Python stages (validation, index extraction, JSON) per resource.

    python -m bench.write_bench [--pg postgresql+psycopg://postgres@127.0.0.1:5432/test]
        [--creates 300] [--bundles 20] [--runs 5] [--no-r4b] [--profile create|bundle]
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa

from bench import data
from fhir_server import jsonio
from fhir_server.service.conditional import ConditionalService
from fhir_server.service.indexing import index_resource, index_rows
from fhir_server.service.resources import ResourceService
from fhir_server.service.transaction import BundleService
from fhir_server.storage import migrate
from fhir_server.storage.db import Database

BASE = "http://bench/fhir"


@contextmanager
def _database(kind: str, pg_url: str) -> Iterator[Database]:
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            db = Database.from_url(f"sqlite:///{Path(folder) / 'bench.sqlite3'}", pool_size=2)
            migrate.upgrade(db.engine)
            try:
                yield db
            finally:
                db.dispose()
        return
    schema = f"wb_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(pg_url)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in pg_url else "?"
    db = Database.from_url(f"{pg_url}{sep}options={quote(f'-csearch_path={schema}')}", pool_size=2)
    try:
        migrate.upgrade(db.engine)
        yield db
    finally:
        db.dispose()
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


def _services(db: Database, r4b: bool) -> tuple[ResourceService, BundleService]:
    resources = ResourceService(db, index_resource, r4b_model_check=r4b, prepare_index=index_rows)
    conditional = ConditionalService(resources)
    return resources, BundleService(resources, conditional, max_entries=1000, default_count=50, max_count=1000)


#: CPU µs of the process per item of the best run of the last ``_best`` call (a shared machine
#: stretches wall time; CPU time moves less)
last_cpu = 0.0


def _best(runs: int, n: int, make: Callable[[int, int], Any], run: Callable[[Any], Any]) -> float:
    """Wall µs per item: the best of ``runs`` runs of ``n`` items (inputs made outside the timing)."""
    global last_cpu
    best = float("inf")
    for r in range(runs):
        items = [make(r, i) for i in range(n)]
        t0, c0 = time.perf_counter(), time.process_time()
        for item in items:
            run(item)
        wall = (time.perf_counter() - t0) / n * 1e6
        if wall < best:
            best, last_cpu = wall, (time.process_time() - c0) / n * 1e6
    return best


def bench_db(kind: str, pg_url: str, args: argparse.Namespace) -> None:
    with _database(kind, pg_url) as db:
        resources, bundles = _services(db, not args.no_r4b)
        # warm-up: caches, compiled expressions, lazily imported models
        for i in range(20):
            resources.create("Patient", data.patient(10_000_000 + i))
        bundles.process(BASE, data.visit_bundle(10_000_000), representation=False)
        create = _best(args.runs, args.creates, lambda r, i: data.patient(r * 100_000 + i), lambda p: resources.create("Patient", p))
        create_cpu = last_cpu
        bundle = _best(
            args.runs,
            args.bundles,
            lambda r, i: data.visit_bundle(5_000_000 + r * 10_000 + i),
            lambda b: bundles.process(BASE, b, representation=False),
        )
        print(
            f"{kind:10} create Patient {create:8.0f} µs (CPU {create_cpu:.0f})   50-entry transaction {bundle:8.0f} µs "
            f"(CPU {last_cpu:.0f}; {bundle / 50:.0f} µs/resource, {50e6 / bundle:.0f} resources/s on one thread)"
        )
        if args.profile in ("create", "bundle"):
            _profile(args, resources, bundles)


def _profile(args: argparse.Namespace, resources: ResourceService, bundles: BundleService) -> None:
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0002)
    if args.profile == "create":
        patients = [data.patient(20_000_000 + i) for i in range(args.creates)]
        with profiler:
            for p in patients:
                resources.create("Patient", p)
    else:
        items = [data.visit_bundle(20_000_000 + i) for i in range(args.bundles)]
        with profiler:
            for b in items:
                bundles.process(BASE, b, representation=False)
    print(profiler.output_text(unicode=True, color=False, show_all=False))


def bench_stages(args: argparse.Namespace) -> None:
    """Pure-Python stages per resource of a visit Bundle (no database)."""
    from fhir_server.model.structure import check_structure
    from fhir_server.model.validate import model_issues
    from fhir_server.search.extract import extract_index
    from fhir_server.service.resources import stamp

    bundle = data.visit_bundle(1)
    samples = [copy.deepcopy(e["resource"]) for e in bundle["entry"]]
    for r in samples:  # as stored: references resolved, id and meta stamped
        for key in ("subject", "beneficiary", "encounter", "patient"):
            if isinstance(r.get(key), dict):
                r[key] = {"reference": f"{'Encounter' if key == 'encounter' else 'Patient'}/{uuid.uuid4()}"}
    stamped = [stamp(r, str(uuid.uuid4()), 1, 1_700_000_000_000_000) for r in samples]
    by_type: dict[str, list[dict[str, Any]]] = {}
    for r in stamped:
        by_type.setdefault(r["resourceType"], []).append(r)
    stages: dict[str, Callable[[dict[str, Any]], Any]] = {
        "structure check": check_structure,
        "R4B model": model_issues,
        "extract_index": extract_index,
        "jsonio.dumps": jsonio.dumps,
    }
    print(f"{'stage (µs per resource)':24}" + "".join(f"{t:>13}" for t in by_type))
    for name, fn in stages.items():
        cells = []
        for items in by_type.values():
            cells.append(_best(args.runs, 200, lambda r, i, items=items: items[i % len(items)], fn))
        print(f"{name:24}" + "".join(f"{c:13.1f}" for c in cells))


def bench_http(args: argparse.Namespace) -> None:
    """µs per ``POST /fhir/Patient`` and per visit transaction through the whole ASGI app
    (middleware, audit, routing, JSON) on SQLite, one request at a time, no network."""
    import asyncio
    import os

    import orjson

    from fhir_server.app import create_app
    from fhir_server.config import Settings

    async def call(app: Any, method: str, path: str, body: bytes, headers: list[tuple[bytes, bytes]]) -> int:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"bench"), (b"content-type", b"application/fhir+json"), *headers],
            "client": ("127.0.0.1", 5000),
            "server": ("127.0.0.1", 8080),
        }
        sent = False
        status = 0

        async def receive() -> dict:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        await app(scope, receive, send)
        return status

    async def run(folder: str) -> None:
        os.environ.setdefault("FHIR_AUTH", "none")
        settings = Settings(database_url=f"sqlite:///{folder}/http.sqlite3", r4b_model_check=not args.no_r4b, export_worker=False)
        app = create_app(settings)
        startup: asyncio.Queue = asyncio.Queue()
        done = asyncio.Event()
        await startup.put({"type": "lifespan.startup"})

        async def lifespan_send(message: dict) -> None:
            if message["type"] == "lifespan.startup.complete":
                done.set()

        task = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}}, startup.get, lifespan_send))
        await done.wait()
        minimal = [(b"prefer", b"return=minimal")]
        for i in range(20):
            assert await call(app, "POST", "/fhir/Patient", orjson.dumps(data.patient(9_000_000 + i)), []) == 201
        best_create = best_bundle = (float("inf"), 0.0)
        for r in range(args.runs):
            bodies = [orjson.dumps(data.patient(r * 100_000 + i)) for i in range(args.creates)]
            t0, c0 = time.perf_counter(), time.process_time()
            for b in bodies:
                await call(app, "POST", "/fhir/Patient", b, [])
            n = len(bodies)
            best_create = min(best_create, ((time.perf_counter() - t0) / n * 1e6, (time.process_time() - c0) / n * 1e6))
            bundles = [orjson.dumps(data.visit_bundle(7_000_000 + r * 10_000 + i)) for i in range(args.bundles)]
            t0, c0 = time.perf_counter(), time.process_time()
            for b in bundles:
                assert await call(app, "POST", "/fhir", b, minimal) == 200
            n = len(bundles)
            best_bundle = min(best_bundle, ((time.perf_counter() - t0) / n * 1e6, (time.process_time() - c0) / n * 1e6))
        if args.profile == "http":
            from pyinstrument import Profiler

            bodies = [orjson.dumps(data.patient(30_000_000 + i)) for i in range(args.creates)]
            with Profiler(interval=0.0002, async_mode="disabled") as profiler:
                for b in bodies:
                    await call(app, "POST", "/fhir/Patient", b, [])
            print(profiler.output_text(unicode=True, color=False, show_all=False))
        print(
            f"{'http sqlite':10} create Patient {best_create[0]:8.0f} µs (CPU {best_create[1]:.0f})   "
            f"50-entry transaction {best_bundle[0]:8.0f} µs (CPU {best_bundle[1]:.0f}; through the ASGI app, "
            f"audit {'on' if settings.audit else 'off'})"
        )
        await startup.put({"type": "lifespan.shutdown"})
        await task

    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(run(folder))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pg", default="", help="PostgreSQL URL (also measure PostgreSQL)")
    ap.add_argument("--creates", type=int, default=300)
    ap.add_argument("--bundles", type=int, default=20)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--no-r4b", action="store_true", help="FHIR_R4B_MODEL_CHECK=false")
    ap.add_argument("--profile", choices=["create", "bundle", "http"], help="pyinstrument profile after measuring")
    ap.add_argument("--db", choices=["sqlite", "postgresql", "both", "none"], default="both")
    ap.add_argument("--stages", action="store_true", help="also time the pure-Python stages")
    ap.add_argument("--http", action="store_true", help="also time requests through the ASGI app (SQLite)")
    args = ap.parse_args()
    if args.db in ("sqlite", "both"):
        bench_db("sqlite", "", args)
    if args.pg and args.db in ("postgresql", "both"):
        bench_db("postgresql", args.pg, args)
    if args.stages:
        bench_stages(args)
    if args.http:
        bench_http(args)


if __name__ == "__main__":
    main()
