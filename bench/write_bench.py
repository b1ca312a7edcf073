"""In-process micro-benchmark of the write path (not a test).

Prints µs per create (of a generated Patient) and per 50-entry visit transaction
(the ``ingest`` scenario's Bundle), through the server's own pipeline (no HTTP,
writes at once as the CLI does, no audit trail), best of several runs, and with
``--synthea DIR`` the Synthea sample as 100-entry PUT transactions, on SQLite (a temporary file) and,
with ``--pg URL``, PostgreSQL (a throw-away schema); then the cost of the
pure-Python stages (validation, index extraction, JSON) per resource.

    python -m bench.write_bench [--pg postgresql+psycopg://postgres@127.0.0.1:5432/test]
        [--creates 300] [--bundles 20] [--runs 5] [--no-r4b] [--synthea DIR]
        [--profile create|bundle|synthea|http]
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import sqlalchemy as sa

from bench import data
from fhir_server import jsonio
from fhir_server.config import Settings
from fhir_server.service.access import OPEN
from fhir_server.service.pipeline import Interaction
from fhir_server.service.results import MINIMAL
from fhir_server.state import ServerState, build_state
from fhir_server.storage import migrate
from fhir_server.storage.db import Database

BASE = "http://bench/fhir"


@contextmanager
def _database(kind: str, pg_url: str) -> Iterator[str]:
    """The URL of a fresh SQLite file or PostgreSQL schema, schema up to date."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            url = f"sqlite:///{Path(folder) / 'bench.sqlite3'}"
            _migrated(url)
            yield url
        return
    schema = f"wb_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(pg_url)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in pg_url else "?"
    url = f"{pg_url}{sep}options={quote(f'-csearch_path={schema}')}"
    try:
        _migrated(url)
        yield url
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


def _migrated(url: str) -> None:
    db = Database.from_url(url, pool_size=1)
    try:
        migrate.upgrade(db.engine)
    finally:
        db.dispose()


@contextmanager
def _state(url: str, r4b: bool) -> Iterator[ServerState]:
    """The server's own services and pipeline, writing at once (no event loop: the CLI's way),
    the audit trail off (no request to record)."""
    state = build_state(Settings(database_url=url, r4b_model_check=r4b, audit=False, export_worker=False), blocking_writes=True)
    try:
        yield state
    finally:
        state.db.dispose()


def _runner(state: ServerState) -> tuple[Callable[[dict[str, Any]], Any], Callable[[dict[str, Any]], Any]]:
    """(create a Patient, run a transaction Bundle) through the pipeline, as a request would."""
    pipeline = state.pipeline

    def create(patient: dict[str, Any]) -> Any:
        return asyncio.run(pipeline.handle(Interaction("create", BASE, OPEN, "Patient", body=patient)))

    def transaction(bundle: dict[str, Any]) -> Any:
        answer = asyncio.run(pipeline.handle(Interaction("transaction", BASE, OPEN, body=bundle, returns=MINIMAL)))
        if answer.status != 200:
            raise RuntimeError(f"transaction answered {answer.status}: {answer.body!r:.300}")
        return answer

    return create, transaction


#: CPU µs of the process per item of the best run of the last ``_best`` call (a shared machine
#: stretches wall time; CPU time moves less)
last_cpu = 0.0


def _cycling(items: list[dict[str, Any]]) -> Callable[[int, int], dict[str, Any]]:
    """``_best``'s ``make``: the items in turn."""
    return lambda _run, i: items[i % len(items)]


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


def synthea_bundles(folder: Path, size: int) -> list[dict[str, Any]]:
    """The Synthea sample as transaction Bundles of PUTs in dependency order (bench.synthea's)."""
    from bench import synthea

    return [orjson.loads(b) for level in synthea.bundles_by_level(synthea.read_resources(folder), size) for b in level]


def bench_db(kind: str, pg_url: str, args: argparse.Namespace) -> None:
    with _database(kind, pg_url) as url, _state(url, not args.no_r4b) as state:
        create_one, transaction = _runner(state)
        # warm-up: caches, compiled expressions, lazily imported models
        for i in range(20):
            create_one(data.patient(10_000_000 + i))
        transaction(data.visit_bundle(10_000_000))
        create = _best(args.runs, args.creates, lambda r, i: data.patient(r * 100_000 + i), create_one)
        create_cpu = last_cpu
        bundle = _best(
            args.runs,
            args.bundles,
            lambda r, i: data.visit_bundle(5_000_000 + r * 10_000 + i),
            transaction,
        )
        print(
            f"{kind:10} create Patient {create:8.0f} µs (CPU {create_cpu:.0f})   50-entry transaction {bundle:8.0f} µs "
            f"(CPU {last_cpu:.0f}; {bundle / 50:.0f} µs/resource, {50e6 / bundle:.0f} resources/s on one thread)"
        )
        if args.synthea and args.profile != "synthea":
            bundles = synthea_bundles(args.synthea, 100)
            total = sum(len(b["entry"]) for b in bundles)
            t0, c0 = time.perf_counter(), time.process_time()
            for b in bundles:
                transaction(b)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            print(
                f"{kind:10} Synthea PUT transactions: {total:,} resources in {wall:.2f}s = {total / wall:,.0f}/s on one thread "
                f"({wall / total * 1e6:.0f} µs/resource, CPU {cpu / total * 1e6:.0f})"
            )
        if args.profile in ("create", "bundle", "synthea"):
            _profile(args, create_one, transaction)


def _profile(args: argparse.Namespace, create_one: Callable[[dict[str, Any]], Any], transaction: Callable[[dict[str, Any]], Any]) -> None:
    """A cProfile of the chosen work, top functions by cumulative and own time (proportions hold on a busy machine)."""
    import cProfile
    import pstats

    if args.profile == "create":
        items, run = [data.patient(20_000_000 + i) for i in range(args.creates)], create_one
    elif args.profile == "bundle":
        items, run = [data.visit_bundle(20_000_000 + i) for i in range(args.bundles)], transaction
    else:  # the Synthea Bundles: PUTs of new resources
        if not args.synthea:
            raise SystemExit("--profile synthea needs --synthea DIR")
        items, run = synthea_bundles(args.synthea, 100), transaction
    profiler = cProfile.Profile()
    profiler.enable()
    for item in items:
        run(item)
    profiler.disable()
    stats = pstats.Stats(profiler)
    stats.sort_stats("cumulative").print_stats(45)
    stats.sort_stats("tottime").print_stats(30)


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
            cells.append(_best(args.runs, 200, _cycling(items), fn))
        print(f"{name:24}" + "".join(f"{c:13.1f}" for c in cells))


def bench_http(args: argparse.Namespace) -> None:
    """µs per ``POST /fhir/Patient`` and per visit transaction through the whole ASGI app
    (middleware, audit, routing, JSON) on SQLite, one request at a time, no network."""
    import os

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

        async def lifespan_send(message: MutableMapping[str, Any]) -> None:
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
            import cProfile
            import pstats

            bodies = [orjson.dumps(data.patient(30_000_000 + i)) for i in range(args.creates)]
            profiler = cProfile.Profile()
            profiler.enable()
            for b in bodies:
                await call(app, "POST", "/fhir/Patient", b, [])
            profiler.disable()
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(45)
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
    ap.add_argument("--profile", choices=["create", "bundle", "synthea", "http"], help="cProfile after measuring")
    ap.add_argument("--synthea", type=Path, help="also time the Synthea sample in this folder as 100-entry PUT transactions")
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
