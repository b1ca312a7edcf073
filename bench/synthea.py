"""Ingest of a Synthea export as a migrating hospital sends it (not a test).

``python -m bench.synthea [--data DIR] [--db sqlite --db postgresql] [--clients 1,8] [--peer sekmet]``

The data (default ``../shared/data/synthea-10-patients`` beside the project: 7,160 resources in
13 NDJSON files, Apache-2.0) is sent in dependency order (the types a type refers to first,
worked out from the references in the data itself) as transaction Bundles of ``--bundle``
(100) ``PUT Type/id`` entries with ``Prefer: return=minimal``:

- one client: one Bundle at a time;
- ``N`` clients: N Bundles in flight, a barrier between dependency levels (a Condition Bundle is
  not sent before every Encounter Bundle it may refer to has been answered).

Every server gets the same Bundles, on a fresh database, side by side in one run (each client
count on every server back to back); with ``--peer sekmet`` the Python peer sekmet-fhir too.
Then ``fhir-server import DIR`` of the same files into a fresh database of each kind; its rate
is the import's own time as it reports it, the process start-up not counted (both are printed).
Prints resources/s and the targets of issue 20 (>= 2.5x the peer and >= 3,300/s for one client,
>= 2.5x the peer for 8 clients, import >= 5,000/s).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bench import client, servers
from bench.__main__ import DEFAULT_PG, database, log

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "synthea-10-patients"
#: issue 20's targets
SINGLE_FACTOR, SINGLE_FLOOR, MULTI_FACTOR, IMPORT_FLOOR = 2.5, 3300.0, 2.5, 5000.0


# -- data -------------------------------------------------------------------------------------------


def read_resources(folder: Path) -> dict[str, list[dict[str, Any]]]:
    by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for path in sorted(folder.glob("*.ndjson")):
        with path.open("rb") as f:
            for line in f:
                if line.strip():
                    resource = orjson.loads(line)
                    by_type[resource["resourceType"]].append(resource)
    if not by_type:
        raise SystemExit(f"no NDJSON files in {folder}")
    return by_type


def _referenced_types(value: Any, out: set[str]) -> None:
    if isinstance(value, dict):
        ref = value.get("reference")
        if isinstance(ref, str) and ref[:1].isupper():
            out.add(ref.split("/", 1)[0].split("?", 1)[0])
        for v in value.values():
            _referenced_types(v, out)
    elif isinstance(value, list):
        for v in value:
            _referenced_types(v, out)


def dependency_levels(by_type: dict[str, list[dict[str, Any]]]) -> list[list[str]]:
    """Types in levels: each level refers only to types of earlier levels (or itself)."""
    needs: dict[str, set[str]] = {}
    for res_type, resources in by_type.items():
        refs: set[str] = set()
        for r in resources:
            _referenced_types(r, refs)
        needs[res_type] = {t for t in refs if t in by_type and t != res_type}
    levels: list[list[str]] = []
    done: set[str] = set()
    while len(done) < len(needs):
        level = sorted(t for t in needs if t not in done and needs[t] <= done)
        if not level:  # a cycle between types: send the rest together
            level = sorted(t for t in needs if t not in done)
        levels.append(level)
        done.update(level)
    return levels


def bundles_by_level(by_type: dict[str, list[dict[str, Any]]], size: int) -> list[list[bytes]]:
    out = []
    for level in dependency_levels(by_type):
        entries = [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for t in level for r in by_type[t]
        ]
        out.append([orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": c}) for c in client.chunks(entries, size)])
    return out


# -- sending ----------------------------------------------------------------------------------------


@dataclass
class Run:
    server: str
    clients: int
    resources: int
    seconds: float
    errors: int
    first_error: str = ""

    @property
    def rate(self) -> float:
        return self.resources / self.seconds if self.seconds else 0.0


def send(fhir: str, levels: list[list[bytes]], clients: int, label: str) -> Run:
    errors: list[str] = []
    lock = threading.Lock()
    total = sum(len(orjson.loads(b)["entry"]) for level in levels for b in level)

    def one(body: bytes) -> None:
        status, _, answer = client.request("POST", fhir, body, {"Prefer": "return=minimal"})
        if status >= 300:
            with lock:
                errors.append(f"HTTP {status}: {answer[:300]!r}")

    started = time.monotonic()
    with ThreadPoolExecutor(clients) as pool:
        for level in levels:  # the barrier: a level's Bundles are all answered before the next is sent
            list(pool.map(one, level))
    seconds = time.monotonic() - started
    log(f"  {label}: {total:,} resources in {seconds:.2f}s = {total / seconds:,.0f}/s, {len(errors)} failed Bundles")
    return Run(label, clients, total, seconds, len(errors), errors[0] if errors else "")


def import_run(data_dir: Path, url: str, label: str) -> Run:
    """``fhir-server import DIR`` into a fresh database (migrations run before the clock starts)."""
    cli = [sys.executable, "-m", "fhir_server.cli"]
    subprocess.run([*cli, "migrate", "--database-url", url], check=True, capture_output=True, cwd=ROOT)
    started = time.monotonic()
    p = subprocess.run([*cli, "import", str(data_dir), "--database-url", url], capture_output=True, text=True, cwd=ROOT)
    command = time.monotonic() - started
    text = p.stdout + p.stderr
    errors = 0 if p.returncode == 0 else 1
    total = sum(1 for f in data_dir.glob("*.ndjson") for line in f.open("rb") if line.strip())
    # the rate is the import's own time, as the command reports it (reading the files to the last
    # commit): the process start-up (~1.5 s of imports) is the same for 7,000 or 7 million resources
    reported = re.search(r" in ([0-9.]+)s \(", text)
    seconds = float(reported.group(1)) if reported else command
    rate = total / seconds
    log(f"  {label}: {total:,} resources in {seconds:.2f}s = {rate:,.0f}/s; the command took {command:.2f}s (exit {p.returncode})")
    return Run(label, 1, total, seconds, errors, "" if p.returncode == 0 else text[-600:])


# -- the run ----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--db", action="append", choices=["sqlite", "postgresql"])
    parser.add_argument("--postgres-url", default=DEFAULT_PG)
    parser.add_argument("--clients", default="1,8", help="client counts, comma-separated")
    parser.add_argument("--bundle", type=int, default=100, help="entries per transaction Bundle")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers per server (peer too)")
    parser.add_argument("--peer", choices=["sekmet"])
    parser.add_argument("--peer-venv", type=Path, default=servers.default_peer_venv())
    parser.add_argument("--no-import", action="store_true", help="skip the `fhir-server import` rows")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    kinds = args.db or ["sqlite"]
    counts = [int(c) for c in args.clients.split(",") if c.strip()]
    by_type = read_resources(args.data)
    levels = bundles_by_level(by_type, args.bundle)
    order = " -> ".join("+".join(level) for level in dependency_levels(by_type))
    log(f"{sum(len(v) for v in by_type.values()):,} resources; levels: {order}")
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="fhir-bench-synthea-") as tmpname:
        tmp = Path(tmpname)
        for clients in counts:
            for start_server in _servers(args, kinds, tmp / f"c{clients}"):
                with start_server() as (label, fhir):
                    runs.append(send(fhir, levels, clients, f"{label}, {clients} client{'s' if clients > 1 else ''}"))
        if not args.no_import:
            for kind in kinds:
                (tmp / f"import-{kind}").mkdir()
                with database(kind, tmp / f"import-{kind}", args.postgres_url) as url:
                    runs.append(import_run(args.data, url, f"fhir-server import ({kind})"))
    print_table(runs)
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ | {"rate": r.rate} for r in runs], indent=2))


def _servers(args: argparse.Namespace, kinds: list[str], tmp: Path) -> Iterator[Any]:
    """A context-manager factory per server under test, each on a fresh database."""
    tmp.mkdir(parents=True, exist_ok=True)
    for kind in kinds:

        def ours(kind: str = kind) -> Any:
            return _ours(kind, tmp / kind, args)

        yield ours
    if args.peer:

        def peer() -> Any:
            return _peer(tmp / "peer", args)

        yield peer


class _served:
    def __init__(self, label: str, cmd: list[str], port: int, env: dict[str, str] | None, logfile: Path, stack: ExitStack | None = None):
        self.label, self.cmd, self.port, self.env, self.logfile = label, cmd, port, env, logfile
        self.stack = stack or ExitStack()

    def __enter__(self) -> tuple[str, str]:
        base = f"http://127.0.0.1:{self.port}"
        self.stack.enter_context(servers.running(self.cmd, f"{base}/fhir/metadata", self.env, self.logfile))
        return self.label, f"{base}/fhir"

    def __exit__(self, *exc: object) -> None:
        self.stack.close()


def _ours(kind: str, folder: Path, args: argparse.Namespace) -> _served:
    folder.mkdir(parents=True, exist_ok=True)
    stack = ExitStack()
    url = stack.enter_context(database(kind, folder, args.postgres_url))
    port = servers.free_port()
    return _served(f"ours ({kind})", servers.our_server(port, url, args.workers), port, None, folder / "server.log", stack)


def _peer(folder: Path, args: argparse.Namespace) -> _served:
    folder.mkdir(parents=True, exist_ok=True)
    python = servers.ensure_sekmet(args.peer_venv)
    port = servers.free_port()
    cmd, env = servers.sekmet_server(python, port, args.workers, folder)
    return _served(f"sekmet-fhir {servers.sekmet_version(python)} (sqlite)", cmd, port, env, folder / "server.log")


def print_table(runs: list[Run]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Synthea ingest: transaction Bundles of PUTs, and fhir-server import")
    for col in ("server", "clients", "resources", "seconds", "resources/s", "failed", "vs peer", "target", "met"):
        table.add_column(col, justify="left" if col in ("server", "target") else "right")
    peer = {r.clients: r.rate for r in runs if r.server.startswith("sekmet") and not r.errors}
    for r in runs:
        target, met, ratio = "", "", ""
        if r.server.startswith("fhir-server import"):
            target, ok = f">= {IMPORT_FLOOR:,.0f}/s", r.rate >= IMPORT_FLOOR and not r.errors
            met = "yes" if ok else "no"
        elif r.server.startswith("ours"):
            p = peer.get(r.clients)
            ratio = f"{r.rate / p:.2f}x" if p else "-"
            if r.clients == 1:
                target = f">= {SINGLE_FACTOR}x peer, >= {SINGLE_FLOOR:,.0f}/s"
                ok = r.rate >= SINGLE_FLOOR and (p is None or r.rate >= SINGLE_FACTOR * p)
            else:
                target = f">= {MULTI_FACTOR}x peer"
                ok = p is not None and r.rate >= MULTI_FACTOR * p
            met = "yes" if ok and not r.errors else ("no" if p is not None or r.clients == 1 else "no peer")
        table.add_row(r.server, str(r.clients), f"{r.resources:,}", f"{r.seconds:.2f}", f"{r.rate:,.0f}", str(r.errors), ratio, target, met)
    Console(width=180).print(table)
    for r in runs:
        if r.first_error:
            print(f"{r.server}: first failure: {r.first_error}")


if __name__ == "__main__":
    main()
