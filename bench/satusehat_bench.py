"""SATUSEHAT sync benchmark (issue 17, docs/satusehat.md), against the simulator on 127.0.0.1:

1. the backlog: ``--visits`` visits (Encounter + 2 Conditions + 5 Observations each) are stored
   with the sync off, then the sync's process (as the server starts it) drains them against the simulator answering in
   ``--latency`` s (target: >= 50 resources/s with a bounded number of requests in flight);
2. the cost to local writes: ``--cost-visits`` visits stored one Bundle after the other on a fresh
   database with the sync off, then again with the server's sync worker running (its child
   process, or with ``--inline`` on the server's event loop) sending them as they come
   (target: no more than 10 % fewer visits/s).

    python -m bench.satusehat_bench [--visits 10000] [--cost-visits 300] [--latency 0.05]
                                    [--concurrency 8] [--inline] [--database-url URL]

Wall-clock figures: they only mean something on a quiet machine; the load average is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from fhir_server.app import create_app
from fhir_server.config import Settings
from fhir_server.satusehat import store
from fhir_server.satusehat.process import SyncProcess
from fhir_server.storage.db import Database
from tests.satusehat.conftest import base_records, condition, encounter, observation, patient, settings
from tests.satusehat.simulator import Simulator

LOINC = ("8867-4", "9279-1", "8480-6", "8462-4", "8310-5")
RESOURCES_PER_VISIT = 8
TARGET_RATE = 50.0
TARGET_COST = 10.0


def visit_entries(n: int, pid: str = "p1") -> list[dict[str, Any]]:
    eid = f"e{n}"
    entries = [encounter(eid, pid)]
    entries += [condition(f"c{n}-{k}", eid, pid, code=code) for k, code in enumerate(("J06.9", "I10"))]
    entries += [observation(f"o{n}-{k}", eid, pid, loinc=code) for k, code in enumerate(LOINC)]
    return [{"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in entries]


def store_visits(client: TestClient, visits: int, patients: int, per_bundle: int = 1) -> float:
    """Store the Patients and ``visits`` visits (``per_bundle`` to a transaction Bundle); the
    seconds the visits took."""
    base_records(client)
    for p in range(1, patients):
        client.put(f"/fhir/Patient/p{p}", json=patient(f"p{p}"))
    t0 = time.monotonic()
    for first in range(0, visits, per_bundle):
        entries = [e for n in range(first, min(visits, first + per_bundle)) for e in visit_entries(n, f"p{n % patients or 1}")]
        r = client.post("/fhir", json={"resourceType": "Bundle", "type": "transaction", "entry": entries})
        assert r.status_code == 200, r.text
    return time.monotonic() - t0


def _settings(url: str, sim: Simulator, args: argparse.Namespace, **overrides: Any) -> Settings:
    """The tests' settings with the production timings (the tests' are short on purpose)."""
    timings = Settings()
    return settings(
        url,
        sim.url,
        audit=False,
        satusehat_concurrency=args.concurrency,
        satusehat_timeout=timings.satusehat_timeout,
        satusehat_lease_seconds=timings.satusehat_lease_seconds,
        satusehat_poll_interval=timings.satusehat_poll_interval,
        satusehat_retry_base=timings.satusehat_retry_base,
        satusehat_retry_max=timings.satusehat_retry_max,
        satusehat_nice=0,
        **overrides,
    )


def drain(args: argparse.Namespace, sim: Simulator, folder: str) -> None:
    """The backlog stored with the sync off, then drained by the sync's child process (as the
    server runs it; the simulator stays in this process, as SATUSEHAT is elsewhere)."""
    url = args.database_url or f"sqlite:///{Path(folder) / 'backlog.sqlite3'}"
    s = _settings(url, sim, args, satusehat_worker=False)
    with TestClient(create_app(s)) as client:
        took = store_visits(client, args.visits, args.patients, per_bundle=25)
    total = args.visits * RESOURCES_PER_VISIT
    print(f"backlog: stored {args.visits} visits ({total} resources) in {took:.0f} s with the sync off", flush=True)
    db = Database.from_url(s.effective_database_url)

    def synced() -> int:
        with db.read() as conn:
            return sum(n for (_, st), n in store.counts(conn).items() if st == "synced")

    sim.most_in_flight = 0
    calls = len(sim.calls)
    start = last = time.monotonic()
    first: tuple[float, int] | None = None  # when the child had started (its first resource synced)
    child = SyncProcess.start(s)
    try:
        while (done := synced()) < total:
            time.sleep(1.0)
            if first is None and done:
                first = (time.monotonic(), done)
            if time.monotonic() - last > 30:
                last = time.monotonic()
                print(f"  {done}/{total} synced after {last - start:.0f} s (load {os.getloadavg()[0]:.1f})", flush=True)
        end = time.monotonic()
    finally:
        asyncio.run(child.stop())
        db.dispose()
    since, before = first or (start, 0)
    rate = (total - before) / max(end - since, 1e-9)
    verdict = "meets" if rate >= TARGET_RATE else "MISSES"
    print(
        f"backlog: drained {total} resources in {end - start:.0f} s ({since - start:.0f} s of it the process starting) = "
        f"{rate:.1f} resources/s once started ({verdict} the target of {TARGET_RATE:.0f}/s)"
    )
    most = sim.most_in_flight
    print(f"  requests to SATUSEHAT: {len(sim.calls) - calls}; most in flight at once: {most} (concurrency {args.concurrency})")


def cost(args: argparse.Namespace, sim: Simulator, folder: str) -> None:
    """Visits/s stored one Bundle after the other, sync off, then on (a fresh database each)."""
    rates = {}
    for name, on in (("off", False), ("on", True)):
        url = f"sqlite:///{Path(folder) / f'cost-{name}.sqlite3'}"
        s = _settings(url, sim, args, satusehat_worker=on, satusehat_worker_process=not args.inline)
        with TestClient(create_app(s)) as client:
            rates[name] = args.cost_visits / store_visits(client, args.cost_visits, args.patients)
    where = "on the server's event loop" if args.inline else "in its child process"
    change = 100 * (rates["on"] / rates["off"] - 1)
    verdict = "meets" if change >= -TARGET_COST else "MISSES"
    print(
        f"cost: {rates['off']:.1f} visits/s with the sync off, {rates['on']:.1f} with it {where}: {change:+.1f} % "
        f"({verdict} the target of -{TARGET_COST:.0f} % at most)"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--visits", type=int, default=10_000, help="the backlog to drain (0: skip)")
    ap.add_argument("--cost-visits", type=int, default=300, help="visits stored to measure the cost to local writes (0: skip)")
    ap.add_argument("--latency", type=float, default=0.05)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--patients", type=int, default=200, help="visits are spread over this many patients")
    ap.add_argument("--inline", action="store_true", help="cost: the sync worker on the server's event loop, not its own process")
    ap.add_argument("--database-url", default="", help="the backlog's database (default: a SQLite file)")
    args = ap.parse_args()
    sim = Simulator(latency=args.latency).start()
    folder = tempfile.mkdtemp(prefix="ssbench")
    print(f"load average before: {os.getloadavg()}", flush=True)
    try:
        if args.visits:
            drain(args, sim, folder)
        if args.cost_visits:
            cost(args, sim, folder)
    finally:
        sim.stop()
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
