"""``python -m bench``: throughput and latency of the server under a bounded loopback load (wrk).

Not a test. Two commands:

``python -m bench run [--db sqlite --db postgresql] [--workers 2] [--duration 10] [--patients 10000]
[--scenarios read,create,...] [--peer sekmet] [--json FILE]``
    starts the trivial FastAPI yardstick, our server on each database and (with ``--peer sekmet``) the
    Python peer sekmet-fhir; preloads the same generated data into each through its transaction
    endpoint; runs every scenario for ``--duration`` seconds; prints the results and the targets.

``python -m bench scale --sizes 10000,100000,1000000 [--db postgresql]``
    preloads growing numbers of Patients (with Encounters) into one database and measures the four
    searches at each size.

Every load goes to 127.0.0.1 only and is bounded by ``--duration`` and ``--connections``.
See docs/performance.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import statistics
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import sqlalchemy as sa

from bench import client, data, load, servers
from bench import targets as T

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SCENARIOS = {
    # searches before the writes, so that they see the preloaded size
    "read": T.READ,
    "identifier": T.IDENT,
    "family": T.FAMILY,
    "family-gender": T.FAMILY_GENDER,
    "birthdate": T.BIRTH,
    "encounter": T.ENC,
    "compartment": T.COMPARTMENT,
    "compartment-all": T.COMPARTMENT_ALL,
    "everything": T.EVERYTHING,
    "phonetic": T.PHONETIC,
    "create": T.CREATE,
    "ingest": T.INGEST,
    "mixed": T.MIXED,
}
#: scenarios of routes the peer does not have: run only when asked for
OURS_ONLY = frozenset({T.FAMILY_GENDER, T.COMPARTMENT, T.COMPARTMENT_ALL, T.EVERYTHING, T.PHONETIC})


def _ours_only() -> list[str]:
    return [name for name, scenario in SCENARIOS.items() if scenario in OURS_ONLY]


PAGE = 20  # _count on every search: our default page is 50, the peer's 20; the same page for both


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- databases --------------------------------------------------------------------------------------


def analyze(url: str) -> None:
    """Fresh planner statistics after the preload, as after any bulk load (autovacuum would
    get there later; measuring before it does measures stale statistics)."""
    from fhir_server.storage.db import Database

    db = Database.from_url(url, pool_size=1)
    try:
        db.analyze()
    finally:
        db.dispose()


def checkpoint(url: str) -> None:
    """PostgreSQL: write the load's dirty pages out now. Measured right after a 1,000,000-Patient
    COPY, the checkpointer flushed gigabytes beside the searches (birthdate p50 1.67x the 10k
    figure; 1.02-1.05x a few minutes later, same code)."""
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("CHECKPOINT")
    finally:
        engine.dispose()


@contextmanager
def database(kind: str, tmp: Path, pg_url: str) -> Iterator[str]:
    """A fresh SQLite file, or a fresh PostgreSQL schema (dropped afterwards)."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp / 'bench.sqlite3'}"
        return
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(pg_url)
    with admin.begin() as c:
        c.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        sep = "&" if "?" in pg_url else "?"
        yield f"{pg_url}{sep}options={quote('-csearch_path=' + schema)}"
    finally:
        with admin.begin() as c:
            c.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


# -- data -------------------------------------------------------------------------------------------


@dataclass
class Loaded:
    """What a preload leaves behind: how many Patients, and a sample of their server ids."""

    patients: int = 0
    ids: list[str] = field(default_factory=list)
    seconds: float = 0.0
    resources: int = 0
    sample_max: int = 5000
    _seen: int = 0
    _rng: random.Random = field(default_factory=lambda: random.Random(7))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def keep(self, pid: str) -> None:
        """Reservoir sample of Patient ids."""
        with self._lock:
            self._seen += 1
            if len(self.ids) < self.sample_max:
                self.ids.append(pid)
            else:
                j = self._rng.randrange(self._seen)
                if j < self.sample_max:
                    self.ids[j] = pid


def preload(fhir: str, loaded: Loaded, upto: int, *, per_bundle: int, threads: int, encounters: int, extras: bool, label: str) -> None:
    """Patients ``loaded.patients .. upto`` (with Encounters etc.) in transaction Bundles of ``per_bundle`` Patients,
    ``threads`` Bundles in flight, ``Prefer: return=minimal``."""
    start = loaded.patients
    if upto <= start:
        return
    per_patient = 1 + encounters + ((1 if encounters else 0) + 1 if extras else 0)
    total = (upto - start) * per_patient
    log(
        f"preloading {label}: Patients {start:,}..{upto:,} ({total:,} resources, {per_bundle} Patients per transaction, "
        f"{threads} in flight)"
    )
    progress = client.Progress(f"preload {label}", total)

    def bundles() -> Iterator[dict]:
        for chunk in client.chunks(range(start, upto), per_bundle):
            yield data.bundle([e for n in chunk for e in data.preload_entries(n, encounters, extras)])

    def on_result(_: dict, ids: list[tuple[str, str]]) -> None:
        for t, i in ids:
            if t == "Patient":
                loaded.keep(i)

    t0 = time.monotonic()
    client.load_bundles(fhir, bundles(), threads, progress, on_result)
    loaded.seconds += time.monotonic() - t0
    loaded.resources += total
    loaded.patients = upto
    log(f"  preloaded {total:,} resources in {time.monotonic() - t0:.1f}s ({progress.rate:,.0f} resources/s)")


def search_paths(scenario: str, loaded: Loaded, count: int = 500, seed: int = 11) -> list[str]:
    rng = random.Random(seed)
    ns = [rng.randrange(loaded.patients) for _ in range(count)]
    if scenario == T.IDENT:
        return [f"/fhir/Patient?identifier={data.NIK_SYSTEM}%7C{data.nik_of(data.patient(n))}&_count={PAGE}" for n in ns]
    if scenario == T.FAMILY:
        return [f"/fhir/Patient?family={quote(data.patient(n)['name'][0]['family'])}&_count={PAGE}" for n in ns]
    if scenario == T.FAMILY_GENDER:
        people = [data.patient(n) for n in ns]
        return [f"/fhir/Patient?family={quote(p['name'][0]['family'])}&gender={p['gender']}&_count={PAGE}" for p in people]
    if scenario == T.BIRTH:
        out = []
        for _ in range(count):
            y, m = rng.randint(1940, 2023), rng.randint(1, 12)
            out.append(f"/fhir/Patient?birthdate=ge{y:04d}-{m:02d}-01&birthdate=le{y:04d}-{m:02d}-28&_count={PAGE}")
        return out
    if scenario == T.ENC:
        return [f"/fhir/Encounter?patient=Patient/{rng.choice(loaded.ids)}&_count={PAGE}" for _ in range(count)]
    if scenario == T.COMPARTMENT:
        return [f"/fhir/Patient/{rng.choice(loaded.ids)}/Encounter?_count={PAGE}" for _ in range(count)]
    if scenario == T.COMPARTMENT_ALL:
        return [f"/fhir/Patient/{rng.choice(loaded.ids)}/*?_count={PAGE}" for _ in range(count)]
    if scenario == T.EVERYTHING:
        return [f"/fhir/Patient/{rng.choice(loaded.ids)}/$everything?_count={PAGE}" for _ in range(count)]
    if scenario == T.PHONETIC:  # the name as heard: the written one, its family in the old spelling where it has one
        names = [data.patient(n)["name"][0] for n in ns]
        return [
            f"/fhir/Patient?phonetic={quote(name['given'][0] + ' ' + name['family'].replace('u', 'oe'))}&_count={PAGE}" for name in names
        ]
    raise ValueError(scenario)


def create_bodies(offset: int, count: int = 200) -> list[str]:
    return [orjson.dumps(data.patient(offset + k)).decode() for k in range(count)]


# -- scenarios --------------------------------------------------------------------------------------


@dataclass
class Target:
    label: str
    base: str
    loaded: Loaded


def record(results: list[load.Result], r: load.Result) -> None:
    results.append(r)
    extra = f" = {r.resources_per_s:,.0f} resources/s" if r.per_request > 1 else ""
    err = f"  errors={r.errors} statuses={r.statuses}" if r.errors else ""
    log(f"  {r.scenario:<28} {r.target:<22} {r.rps:9,.0f} req/s{extra}  p50 {r.p50_ms:.1f}  p95 {r.p95_ms:.1f}  p99 {r.p99_ms:.1f} ms{err}")
    if r.sample_error:
        log(f"    first error response: {r.sample_error[:300]}")


def run_one(sc: str, t: Target, args: argparse.Namespace) -> load.Result:
    kw = {"duration": args.duration, "connections": args.connections}
    reads = [f"/fhir/Patient/{i}" for i in t.loaded.ids[:1000]]
    try:
        if sc == T.READ:
            return load.run(sc, t.label, t.base, load.get_paths_script(reads), **kw)
        if sc in T.SEARCHES:
            return load.run(sc, t.label, t.base, load.get_paths_script(search_paths(sc, t.loaded)), **kw)
        if sc == T.CREATE:
            return load.run(sc, t.label, t.base, load.post_script("/fhir/Patient", create_bodies(10_000_000)), **kw)
        if sc == T.INGEST:
            bundles = [data.visit_bundle(20_000_000 + k, visits=args.visits) for k in range(args.ingest_bundles)]
            script = load.post_with_headers_script("/fhir", [orjson.dumps(b).decode() for b in bundles], {"Prefer": "return=minimal"})
            return load.run(
                sc,
                t.label,
                t.base,
                script,
                duration=args.duration,
                connections=args.ingest_connections,
                per_request=len(bundles[0]["entry"]),
            )
        if sc == T.MIXED:
            searches = [
                p for trio in zip(*(search_paths(s, t.loaded, 100, seed=13) for s in T.SHARED_SEARCHES), strict=False) for p in trio
            ]
            script = load.mixed_script(reads, searches, "/fhir/Patient", create_bodies(30_000_000))
            return load.run(sc, t.label, t.base, script, **kw)
        raise ValueError(sc)
    except Exception as e:  # noqa: BLE001 - one broken scenario must not lose the others
        log(f"  {sc} on {t.label} FAILED: {e}")
        return load.Result(sc, t.label, 0, 0.0, -1, 0.0, 0.0, 0.0, note=f"failed: {e}"[:300])


@contextmanager
def served(
    cmd: list[str], base: str, logfile: Path, name: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> Iterator[None]:
    """The server runs inside; afterwards, error lines of its log are shown."""
    try:
        with servers.running(cmd, f"{base}/fhir/metadata", env=env, log=logfile, cwd=cwd):
            yield
    finally:
        text = logfile.read_text(errors="replace") if logfile.exists() else ""
        problems = [ln for ln in text.splitlines() if "Traceback" in ln or "ERROR" in ln]
        if problems:
            log(f"  {name}: {len(problems)} error lines in the server log ({logfile}); last lines:")
            for ln in text.splitlines()[-25:]:
                log(f"    | {ln}")


def start_ours(stack: ExitStack, kind: str, args: argparse.Namespace, bundle_kw: dict, notes: list[str]) -> Target | None:
    label = f"ours ({kind}, {args.workers}w)"
    sub = stack.enter_context(ExitStack())
    try:
        tmp = Path(sub.enter_context(tempfile.TemporaryDirectory(prefix="fhir-bench-")))
        url = sub.enter_context(database(kind, tmp, args.postgres_url))
        port = servers.free_port()
        base = f"http://127.0.0.1:{port}"
        log(f"{label}: starting on port {port}")
        sub.enter_context(served(servers.our_server(port, url, args.workers), base, tmp / "server.log", label))
        loaded = Loaded()
        preload(f"{base}/fhir", loaded, args.patients, label=label, **bundle_kw)
        analyze(url)
        notes.append(
            f"{label}: preload {loaded.resources:,} resources in {loaded.seconds:.1f}s "
            f"({loaded.resources / loaded.seconds:,.0f} resources/s, {args.load_threads} transactions in flight)"
        )
        return Target(label, base, loaded)
    except Exception as e:  # noqa: BLE001 - reported in the notes; the other targets still run
        traceback.print_exc()
        notes.append(f"{label}: FAILED: {e}")
        sub.close()
        return None


def start_peer(stack: ExitStack, args: argparse.Namespace, bundle_kw: dict, notes: list[str]) -> Target | None:
    try:
        python = servers.ensure_sekmet(args.peer_venv)
    except Exception as e:  # noqa: BLE001 - the peer is optional: without it, ours are still measured
        msg = f"peer sekmet: could not be installed into {args.peer_venv}: {e}"
        log(msg)
        notes.append(msg)
        return None
    label = f"sekmet {servers.sekmet_version(python)} ({args.workers}w)"
    sub = stack.enter_context(ExitStack())
    try:
        tmp = Path(sub.enter_context(tempfile.TemporaryDirectory(prefix="fhir-bench-sekmet-")))
        port = servers.free_port()
        base = f"http://127.0.0.1:{port}"
        cmd, env = servers.sekmet_server(python, port, args.workers, tmp)
        log(f"{label}: starting on port {port}")
        sub.enter_context(served(cmd, base, tmp / "server.log", label, env=env, cwd=tmp))
        loaded = Loaded()
        preload(f"{base}/fhir", loaded, args.patients, label=label, **bundle_kw)
        notes.append(
            f"{label}: preload {loaded.resources:,} resources in {loaded.seconds:.1f}s "
            f"({loaded.resources / loaded.seconds:,.0f} resources/s) through its own transaction endpoint; "
            f"started as `{Path(cmd[0]).name} {' '.join(cmd[1:])}` with SEKMET_CONFIG (SQLite file, "
            "log_inbound off, simulator off, no auth)"
        )
        return Target(label, base, loaded)
    except Exception as e:  # noqa: BLE001 - the peer is optional: without it, ours are still measured
        traceback.print_exc()
        msg = f"peer sekmet: could not be started or loaded: {e}"
        log(msg)
        notes.append(msg)
        sub.close()
        return None


def run(args: argparse.Namespace) -> tuple[list[load.Result], list[str]]:
    """All servers run side by side (idle unless measured); each scenario runs on each server in turn, so the
    figures compared in one row of the targets table were measured minutes apart, not a whole run apart."""
    results: list[load.Result] = []
    notes: list[str] = []
    chosen = [SCENARIOS[s] for s in args.scenarios]
    bundle_kw = {"per_bundle": args.bundle_patients, "threads": args.load_threads, "encounters": args.encounters, "extras": True}
    with ExitStack() as stack:
        targets = [t for kind in args.db if (t := start_ours(stack, kind, args, bundle_kw, notes))]
        if args.peer == "sekmet" and (peer := start_peer(stack, args, bundle_kw, notes)):
            targets.append(peer)
        trivial = None
        if T.READ in chosen:
            port = servers.free_port()
            stack.enter_context(servers.running(servers.trivial_server(port, args.workers), f"http://127.0.0.1:{port}/fhir/metadata"))
            trivial = Target("trivial FastAPI", f"http://127.0.0.1:{port}", Loaded(ids=["x"]))
        for t in targets + ([trivial] if trivial else []):  # warm-up, not recorded: imports, caches, pools
            load.run(
                "warm-up",
                t.label,
                t.base,
                load.get_paths_script([f"/fhir/Patient/{i}" for i in t.loaded.ids[:200]]),
                duration=1,
                connections=args.connections,
            )
        for sc in chosen:
            log(f"{sc}:")
            before = run_one(sc, trivial, args) if sc == T.READ and trivial else None
            for t in targets:
                record(results, run_one(sc, t, args))
            if before is not None and trivial:
                after = run_one(sc, trivial, args)
                # the yardstick before and after our reads; the ratio uses their mean
                mean = load.Result(
                    sc,
                    "trivial FastAPI",
                    before.requests + after.requests,
                    before.seconds + after.seconds,
                    max(before.errors, 0) + max(after.errors, 0),
                    (before.p50_ms + after.p50_ms) / 2,
                    (before.p95_ms + after.p95_ms) / 2,
                    (before.p99_ms + after.p99_ms) / 2,
                    connections=args.connections,
                )
                notes.append(
                    f"trivial FastAPI read: {before.rps:,.0f} req/s before our reads, {after.rps:,.0f} after "
                    "(a big difference means a noisy machine)"
                )
                record(results, mean)
    return results, notes


# -- output -----------------------------------------------------------------------------------------


def _console() -> Any:
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=200)


def print_results(results: list[load.Result], checks: list[T.Check], notes: list[str], title: str, results_table: bool = True) -> None:
    from rich.markup import escape
    from rich.table import Table

    console = _console()
    table = Table(title=title)
    for col in ("scenario", "server", "req/s", "resources/s", "p50 ms", "p95 ms", "p99 ms", "errors", "ours/peer", "ours/trivial"):
        table.add_column(col, justify="left" if col in ("scenario", "server") else "right")
    trivial = next((r for r in results if r.target == "trivial FastAPI"), None)
    peer = {r.scenario: r for r in results if r.target.startswith("sekmet")}
    order = {s: i for i, s in enumerate(SCENARIOS.values())}
    for r in sorted(results, key=lambda r: (order.get(r.scenario, 99), 0 if r.target.startswith("ours") else 1)):
        vs_peer = vs_trivial = ""
        if T.is_ours(r) and r.scenario in peer and T.throughput(peer[r.scenario]):
            vs_peer = f"{T.throughput(r) / T.throughput(peer[r.scenario]):.2f}x"
        if T.is_ours(r) and r.scenario == T.READ and trivial and trivial.rps:
            vs_trivial = f"{r.rps / trivial.rps:.0%}"
        errors = "failed" if r.errors < 0 else (f"[red]{r.errors}[/]" if r.errors else "0")
        table.add_row(
            escape(r.scenario),
            escape(r.target),
            f"{r.rps:,.0f}",
            f"{r.resources_per_s:,.0f}" if r.per_request > 1 else "",
            f"{r.p50_ms:.2f}",
            f"{r.p95_ms:.2f}",
            f"{r.p99_ms:.2f}",
            errors,
            vs_peer,
            vs_trivial,
        )
    if results_table:
        console.print(table)
    notes = notes + [f"{r.scenario} on {r.target}: {r.note}" for r in results if r.note]
    if checks:
        t2 = Table(title="targets (issue 8 item 4, issue 2 item 10, issue 3 item 7)")
        for col in ("figure", "measured", "target", "status"):
            t2.add_column(col)
        for c in checks:
            t2.add_row(escape(c.what), escape(c.figure), escape(c.target), c.mark)
        console.print(t2)
    for n in notes:
        console.print(f"[dim]note:[/] {escape(n)}", highlight=False)


def write_json(
    path: Path, args: argparse.Namespace, results: list[load.Result], checks: list[T.Check], notes: list[str], extra: dict | None = None
) -> None:
    doc = {
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "func"},
        "results": [r.__dict__ | {"rps": r.rps, "resources_per_s": r.resources_per_s} for r in results],
        "targets": [c.__dict__ for c in checks],
        "notes": notes,
        **(extra or {}),
    }
    path.write_text(json.dumps(doc, indent=2))


def cmd_run(args: argparse.Namespace) -> None:
    load.require_wrk()
    args.db = args.db or ["sqlite"]
    started = time.time()
    results, notes = run(args)
    checks = T.run_checks(results, args.patients, args.workers)
    notes.append(
        f"total {time.time() - started:.0f}s; workers={args.workers} connections={args.connections} "
        f"(ingest {args.ingest_connections}) duration={args.duration}s patients={args.patients:,}"
    )
    print_results(results, checks, notes, f"fhir-server-id benchmark (wrk, loopback, {args.patients:,} Patients)")
    if args.json:
        write_json(args.json, args, results, checks, notes)


# -- scale ------------------------------------------------------------------------------------------


def cmd_scale(args: argparse.Namespace) -> None:
    load.require_wrk()
    args.db = args.db or ["postgresql"]
    sizes = sorted(int(s.replace("_", "")) for s in args.sizes.split(","))
    chosen = [SCENARIOS[s] for s in args.scenarios]
    rows: list[tuple[int, load.Result]] = []
    notes: list[str] = []
    started = time.time()
    per_patient = 1 + args.encounters
    if args.keep:
        measure_kept(sizes, chosen, args, rows, notes)
        notes.append(f"total {time.time() - started:.0f}s; workers={args.workers} connections={args.connections} duration={args.duration}s")
        print_scale(rows, notes, args)
        return
    for kind in args.db:
        label = f"ours ({kind}, {args.workers}w)"
        with tempfile.TemporaryDirectory(prefix="fhir-bench-scale-") as tmpname, database(kind, Path(tmpname), args.postgres_url) as url:
            tmp = Path(tmpname)
            port = servers.free_port()
            base = f"http://127.0.0.1:{port}"
            log(
                f"{label}: sizes {', '.join(f'{s:,}' for s in sizes)}; {per_patient} resources per Patient "
                f"(Patient + {args.encounters} Encounters); {sizes[-1] * per_patient:,} resources in all"
            )
            try:
                with served(servers.our_server(port, url, args.workers), base, tmp / "server.log", label):
                    measure_sizes(label, base, url, sizes, chosen, args, rows, notes)
            except Exception as e:  # noqa: BLE001 - reported in the notes; the other database kinds still run
                traceback.print_exc()
                notes.append(f"{label}: FAILED: {e}")
    notes.append(f"total {time.time() - started:.0f}s; workers={args.workers} connections={args.connections} duration={args.duration}s")
    print_scale(rows, notes, args)


def measure_sizes(
    label: str,
    base: str,
    url: str,
    sizes: list[int],
    chosen: list[str],
    args: argparse.Namespace,
    rows: list[tuple[int, load.Result]],
    notes: list[str],
) -> None:
    loaded = Loaded()
    for size in sizes:
        preload(
            f"{base}/fhir",
            loaded,
            size,
            per_bundle=args.bundle_patients,
            threads=args.load_threads,
            encounters=args.encounters,
            extras=False,
            label=f"{label} -> {size:,}",
        )
        analyze(url)
        notes.append(
            f"{label}: {size:,} Patients loaded after {loaded.seconds:.0f}s of loading "
            f"({loaded.resources / loaded.seconds:,.0f} resources/s on average)"
        )
        for sc in chosen:
            r = load.run(
                sc, f"{label}", base, load.get_paths_script(search_paths(sc, loaded)), duration=args.duration, connections=args.connections
            )
            rows.append((size, r))
            log(
                f"  {size:>10,} {sc:<28} {r.rps:8,.0f} req/s  p50 {r.p50_ms:.1f}  p95 {r.p95_ms:.1f}  "
                f"p99 {r.p99_ms:.1f} ms  errors {r.errors}"
            )


def kept_database(prefix: str, size: int, encounters: int, pg_url: str) -> tuple[str, bool]:
    """The URL of the PostgreSQL database ``<prefix>_<size>_e<encounters>`` (created if missing) and
    whether it already holds a complete load (its comment, written when a load finished)."""
    name = f"{prefix}_{size}_e{encounters}"
    marker = f"bench scale: {size} Patients, {encounters} Encounters each"
    admin = sa.create_engine(sa.engine.make_url(pg_url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as c:
            row = c.exec_driver_sql(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %(n)s", {"n": name}
            ).first()
            if row is not None and row[0] != marker:
                c.exec_driver_sql(f'DROP DATABASE "{name}"')  # an interrupted load: start again
            if row is None or row[0] != marker:
                c.exec_driver_sql(f'CREATE DATABASE "{name}"')
    finally:
        admin.dispose()
    return sa.engine.make_url(pg_url).set(database=name).render_as_string(hide_password=False), row is not None and row[0] == marker


def mark_loaded(url: str, size: int, encounters: int) -> None:
    u = sa.engine.make_url(url)
    admin = sa.create_engine(u.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as c:
            c.exec_driver_sql(f"COMMENT ON DATABASE \"{u.database}\" IS 'bench scale: {size} Patients, {encounters} Encounters each'")
    finally:
        admin.dispose()


def sample_ids(url: str, count: int = 5000) -> list[str]:
    """Patient ids of a kept database (deterministic: the same sample in every run)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as c:
            sql = "SELECT res_id FROM resources WHERE res_type = 'Patient' AND deleted = false ORDER BY md5(res_id) LIMIT %(n)s"
            return [r[0] for r in c.exec_driver_sql(sql, {"n": count})]
    finally:
        engine.dispose()


def bulk_preload(url: str, size: int, encounters: int, processes: int, loaded: Loaded) -> None:
    """``--bulk``: Patients 0..size with COPY (bench/bulk_load.py), ``processes`` ranges at once."""
    from concurrent.futures import ProcessPoolExecutor

    from bench import bulk_load

    log(f"bulk-loading {size:,} Patients ({encounters} Encounters each) into {sa.engine.make_url(url).database}, {processes} processes")
    t0 = time.monotonic()
    step = -(-size // processes)
    with ProcessPoolExecutor(processes) as pool:
        jobs = [pool.submit(bulk_load.load, url, lo, min(size, lo + step), encounters) for lo in range(0, size, step)]
        for job in jobs:
            job.result()
    loaded.seconds = time.monotonic() - t0
    loaded.resources = size * (1 + encounters)
    loaded.patients = size
    log(f"  loaded {loaded.resources:,} resources in {loaded.seconds:.0f}s")


def measure_kept(
    sizes: list[int], chosen: list[str], args: argparse.Namespace, rows: list[tuple[int, load.Result]], notes: list[str]
) -> None:
    """``--keep PREFIX``: one PostgreSQL database per size, loaded once and kept for later runs;
    every size is served at once and each scenario runs on the sizes back to back, so the ratio
    of two sizes is measured seconds apart (the machine's load moves less in between)."""
    label = f"ours (postgresql, {args.workers}w)"
    with ExitStack() as stack:
        bases: dict[int, tuple[str, Loaded]] = {}
        for size in sizes:
            url, complete = kept_database(args.keep, size, args.encounters, args.postgres_url)
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fhir-bench-scale-")))
            port = servers.free_port()
            base = f"http://127.0.0.1:{port}"
            stack.enter_context(served(servers.our_server(port, url, args.workers), base, tmp / "server.log", f"{label} {size:,}"))
            loaded = Loaded()
            if complete:
                log(f"{label}: reusing {sa.engine.make_url(url).database} ({size:,} Patients)")
                loaded.patients = size
            elif args.bulk:
                bulk_preload(url, size, args.encounters, args.load_threads, loaded)
                analyze(url)
                checkpoint(url)
                mark_loaded(url, size, args.encounters)
                notes.append(f"{size:,} Patients loaded with COPY (bench/bulk_load.py) in {loaded.seconds:.0f}s")
            else:
                preload(
                    f"{base}/fhir",
                    loaded,
                    size,
                    per_bundle=args.bundle_patients,
                    threads=args.load_threads,
                    encounters=args.encounters,
                    extras=False,
                    label=f"{label} -> {size:,}",
                )
                analyze(url)
                mark_loaded(url, size, args.encounters)
                notes.append(f"{size:,} Patients loaded in {loaded.seconds:.0f}s ({loaded.resources / loaded.seconds:,.0f} resources/s)")
            loaded.ids = sample_ids(url)
            bases[size] = (base, loaded)
        for base, loaded in bases.values():  # warm the caches of every server and database alike
            load.run("warm-up", label, base, load.get_paths_script(search_paths(T.IDENT, loaded)), duration=1, connections=1)
        for sc in chosen:
            scripts = {size: load.get_paths_script(search_paths(sc, loaded)) for size, (_, loaded) in bases.items()}
            if args.warm:  # the scenario's searches once first: their pages in memory, as in a server that has run a while
                for size, (base, _) in bases.items():
                    load.run(f"{sc} warm-up", label, base, scripts[size], duration=args.warm, connections=1)
            # the sizes in turn, --slices times: the VM's speed swings within seconds (the same work
            # took 5.5 to 11.3 ms of CPU in neighbouring 10 s windows, docs/satusehat.md), and each
            # size then meets the same swings instead of one window each
            slices: dict[int, list[load.Result]] = {size: [] for size in bases}
            duration = max(1, args.duration // args.slices)
            for _ in range(args.slices):
                for size, (base, _) in bases.items():
                    slices[size].append(load.run(sc, label, base, scripts[size], duration=duration, connections=args.connections))
            for size, parts in slices.items():
                r = _combined(parts)
                rows.append((size, r))
                log(
                    f"  {size:>10,} {sc:<28} {r.rps:8,.0f} req/s  p50 {r.p50_ms:.2f}  p95 {r.p95_ms:.2f}  "
                    f"p99 {r.p99_ms:.2f} ms  errors {r.errors}"
                )


def _combined(parts: list[load.Result]) -> load.Result:
    """One result of a scenario's slices: requests, time and errors summed, each percentile the
    median of the slices' (wrk gives percentiles, not the latencies)."""
    if len(parts) == 1:
        return parts[0]
    statuses: dict[str, int] = {}
    for part in parts:
        for code, n in part.statuses.items():
            statuses[code] = statuses.get(code, 0) + n
    return dataclasses.replace(
        parts[0],
        requests=sum(p.requests for p in parts),
        seconds=sum(p.seconds for p in parts),
        errors=sum(p.errors for p in parts),
        p50_ms=statistics.median(p.p50_ms for p in parts),
        p95_ms=statistics.median(p.p95_ms for p in parts),
        p99_ms=statistics.median(p.p99_ms for p in parts),
        statuses=statuses,
        note=f"median of {len(parts)} slices",
    )


def print_scale(rows: list[tuple[int, load.Result]], notes: list[str], args: argparse.Namespace) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="search latency by size (wrk, loopback)")
    columns = ("Patients", "scenario", "server", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors", f"p95 < {T.P95_MS:g} ms")
    for col in columns:
        table.add_column(col, justify="left" if col in ("scenario", "server") else "right")
    for size, r in rows:
        ok = "[green]yes[/]" if r.p95_ms < T.P95_MS else "[red]no[/]"
        table.add_row(
            f"{size:,}",
            escape(r.scenario),
            escape(r.target),
            f"{r.rps:,.0f}",
            f"{r.p50_ms:.2f}",
            f"{r.p95_ms:.2f}",
            f"{r.p99_ms:.2f}",
            str(r.errors),
            ok,
        )
    _console().print(table)
    checks = T.scale_checks(rows)
    print_results([], checks, notes, "", results_table=False)
    if args.json:
        write_json(args.json, args, [r for _, r in rows], checks, notes, {"sizes": [s for s, _ in rows]})


# -- CLI --------------------------------------------------------------------------------------------


def _scenarios(value: str) -> list[str]:
    names = [s.strip() for s in value.split(",") if s.strip()]
    bad = [s for s in names if s not in SCENARIOS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown scenario(s) {bad}; known: {', '.join(SCENARIOS)}")
    return names


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser, duration: int, connections: int) -> None:
        p.add_argument("--db", action="append", choices=["sqlite", "postgresql"], help="database(s) (repeatable)")
        p.add_argument("--workers", type=int, default=2, help="uvicorn worker processes per server (peer too)")
        p.add_argument("--duration", type=int, default=duration, help="seconds per scenario (wrk -d)")
        p.add_argument("--connections", type=int, default=connections, help="concurrent connections (wrk -c)")
        p.add_argument("--postgres-url", default=DEFAULT_PG)
        p.add_argument("--bundle-patients", type=int, default=100, help="Patients per preload transaction")
        p.add_argument("--load-threads", type=int, default=2, help="preload transactions in flight")
        p.add_argument("--encounters", type=int, default=3, help="Encounters per preloaded Patient")
        p.add_argument("--json", type=Path, help="also write the results to this file")

    r = sub.add_parser("run", help="run the scenarios and print the table")
    common(r, 10, 32)
    r.add_argument("--patients", type=int, default=10_000, help="Patients preloaded (each with Encounters, a Condition, a Coverage)")
    r.add_argument(
        "--scenarios",
        type=_scenarios,
        nargs="+",
        default=[[s for s in SCENARIOS if SCENARIOS[s] not in OURS_ONLY]],
        help=f"subset of: {' '.join(SCENARIOS)} (space- or comma-separated; by default all but {' '.join(sorted(_ours_only()))})",
    )
    r.add_argument("--peer", choices=["sekmet"], help="also measure the Python peer sekmet-fhir (PyPI) in the same run")
    r.add_argument("--peer-venv", type=Path, default=servers.default_peer_venv(), help="venv for the peer (created if missing)")
    r.add_argument("--ingest-connections", type=int, default=8, help="connections for transaction ingest")
    r.add_argument("--ingest-bundles", type=int, default=100, help="distinct visit Bundles cycled by the ingest scenario")
    r.add_argument("--visits", type=int, default=8, help="visits per ingest Bundle (2 + 6 x visits entries)")
    r.set_defaults(func=cmd_run)

    s = sub.add_parser("scale", help="search latency at growing numbers of Patients")
    common(s, 10, 1)  # one connection: the latency of a search, not of a queue
    s.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated Patient counts, loaded cumulatively")
    s.add_argument(
        "--scenarios",
        type=_scenarios,
        nargs="+",
        default=[["identifier", "family", "birthdate", "encounter"]],
        help="subset of: identifier family family-gender birthdate encounter compartment compartment-all everything phonetic",
    )
    s.add_argument(
        "--keep",
        metavar="PREFIX",
        help="PostgreSQL only: one database per size named PREFIX_<size>_e<encounters>, loaded once and reused by later runs",
    )
    s.add_argument("--bulk", action="store_true", help="with --keep: load with COPY (bench/bulk_load.py) instead of through the API")
    s.add_argument(
        "--slices",
        type=int,
        default=1,
        help="with --keep: run each scenario's --duration as this many slices, the sizes in turn (percentiles: the slices' median)",
    )
    s.add_argument(
        "--warm",
        type=int,
        default=3,
        metavar="SECONDS",
        help="with --keep: run each scenario's searches this long, unmeasured, before measuring it (0: cold; the kept 1M "
        "databases do not fit in memory together, and a cold first pass reads the disk)",
    )
    s.set_defaults(func=cmd_scale, bundle_patients=200)
    args = parser.parse_args()
    args.scenarios = [name for group in args.scenarios for name in group]
    args.func(args)


if __name__ == "__main__":
    main()
