"""``python -m bench run``: throughput and latency of the server, side by side with a
trivial FastAPI endpoint, under a bounded loopback load (wrk). Not a test.

Example: ``python -m bench run --db sqlite --db postgresql --workers 2 --duration 10``
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import quote

import orjson
import sqlalchemy as sa

from bench import data, load, servers

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _post(base: str, res_type: str, body: dict) -> str:
    req = urllib.request.Request(
        f"{base}/{res_type}", data=orjson.dumps(body), method="POST",
        headers={"Content-Type": "application/fhir+json", "Prefer": "return=minimal"},
    )
    with urllib.request.urlopen(req) as r:
        return r.headers["Location"].split("/_history")[0].rsplit("/", 1)[1]


def _database(kind: str, tmp: Path, pg_url: str) -> tuple[str, callable]:
    if kind == "sqlite":
        return f"sqlite:///{tmp / 'bench.sqlite3'}", lambda: None
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(pg_url)
    with admin.begin() as c:
        c.exec_driver_sql(f"CREATE SCHEMA {schema}")

    def drop() -> None:
        with admin.begin() as c:
            c.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()

    sep = "&" if "?" in pg_url else "?"
    return f"{pg_url}{sep}options={quote('-csearch_path=' + schema)}", drop


def run(args: argparse.Namespace) -> list[load.Result]:
    results: list[load.Result] = []
    rng = random.Random(42)
    bodies = [orjson.dumps(data.patient(rng, n)).decode() for n in range(200)]
    kw = {"duration": args.duration, "connections": args.connections}

    port = servers.free_port()
    with servers.running(servers.trivial_server(port, args.workers), f"http://127.0.0.1:{port}/fhir/metadata"):
        base = f"http://127.0.0.1:{port}"
        results.append(load.run("read by id", "trivial FastAPI", base, load.get_paths_script(["/fhir/Patient/x"]), **kw))

    for kind in args.db:
        with tempfile.TemporaryDirectory() as tmp:
            url, cleanup = _database(kind, Path(tmp), args.postgres_url)
            try:
                port = servers.free_port()
                cmd = servers.our_server(port, url, args.workers)
                with servers.running(cmd, f"http://127.0.0.1:{port}/fhir/metadata", log=Path(tmp) / "server.log"):
                    base = f"http://127.0.0.1:{port}"
                    ids = [_post(base + "/fhir", "Patient", orjson.loads(b)) for b in bodies[: args.preload]]
                    target = f"ours ({kind}, {args.workers}w)"
                    results.append(load.run("read by id", target, base, load.get_paths_script([f"/fhir/Patient/{i}" for i in ids]), **kw))
                    results.append(load.run("create Patient", target, base, load.post_script("/fhir/Patient", bodies), **kw))
            finally:
                cleanup()
    return results


def print_table(results: list[load.Result]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="fhir-server-id benchmark (wrk, loopback)")
    for col in ("scenario", "target", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors", "vs trivial"):
        table.add_column(col, justify="right" if col not in ("scenario", "target") else "left")
    trivial = next((r.rps for r in results if r.target == "trivial FastAPI"), None)
    for r in results:
        ratio = f"{r.rps / trivial:.0%}" if trivial and r.scenario == "read by id" else ""
        table.add_row(r.scenario, r.target, f"{r.rps:,.0f}", f"{r.p50_ms:.2f}", f"{r.p95_ms:.2f}", f"{r.p99_ms:.2f}", str(r.errors), ratio)
    Console().print(table)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run the benchmark and print the table")
    r.add_argument("--db", action="append", choices=["sqlite", "postgresql"], help="database(s) to measure (default: sqlite)")
    r.add_argument("--workers", type=int, default=2)
    r.add_argument("--duration", type=int, default=10, help="seconds per scenario")
    r.add_argument("--connections", type=int, default=32)
    r.add_argument("--preload", type=int, default=200, help="Patients created before the read scenario")
    r.add_argument("--postgres-url", default=DEFAULT_PG)
    r.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args()
    args.db = args.db or ["sqlite"]
    started = time.time()
    results = run(args)
    print_table(results)
    print(f"total {time.time() - started:.0f}s; workers={args.workers} connections={args.connections} duration={args.duration}s")
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ | {"rps": r.rps} for r in results], indent=2))


if __name__ == "__main__":
    main()
