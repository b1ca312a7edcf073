"""SATUSEHAT sync benchmark: drain a backlog of visits (Encounter + 2 Conditions + 5 Observations
each) against the simulator answering in 50 ms (issue 17: >= 50 resources/s with a bounded number
of requests in flight per facility).

    python -m bench.satusehat_bench [--visits 10000] [--latency 0.05] [--concurrency 8] [--database-url URL]

The visits are stored first (transaction Bundles, sync worker off), then one worker drains them;
prints resources/s, requests in flight at most, and the machine's load average (the figures only
mean something on a quiet machine). The simulator listens on 127.0.0.1 only.
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
from fhir_server.satusehat import store
from fhir_server.satusehat.setup import new_worker
from fhir_server.state import build_state
from tests.satusehat.conftest import base_records, condition, encounter, observation, patient, settings
from tests.satusehat.simulator import Simulator

LOINC = ("8867-4", "9279-1", "8480-6", "8462-4", "8310-5")


def visit_bundle(n: int, pid: str = "p1") -> dict[str, Any]:
    eid = f"e{n}"
    entries = [encounter(eid, pid)]
    entries += [condition(f"c{n}-{k}", eid, pid, code=code) for k, code in enumerate(("J06.9", "I10"))]
    entries += [observation(f"o{n}-{k}", eid, pid, loinc=code) for k, code in enumerate(LOINC)]
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in entries],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--visits", type=int, default=10_000)
    ap.add_argument("--latency", type=float, default=0.05)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--patients", type=int, default=200, help="visits are spread over this many patients")
    ap.add_argument("--database-url", default="")
    args = ap.parse_args()
    sim = Simulator(latency=args.latency).start()
    folder = tempfile.mkdtemp(prefix="ssbench")
    url = args.database_url or f"sqlite:///{Path(folder) / 'fhir.sqlite3'}"
    s = settings(url, sim.url, satusehat_worker=False, audit=False, satusehat_concurrency=args.concurrency, satusehat_timeout=10.0)
    print(f"load average before: {os.getloadavg()}")
    with TestClient(create_app(s)) as client:
        took = store_visits(client, args.visits, args.patients)
    total = args.visits * 8
    print(f"stored {args.visits} visits ({total} resources) in {took:.1f} s, sync off: {args.visits / took:.1f} visits/s")
    state = build_state(s)
    worker = new_worker(state, owner="bench")
    assert worker is not None

    def synced() -> int:
        with state.db.read() as conn:
            return sum(n for (_, st), n in store.counts(conn).items() if st == "synced")

    async def drain() -> float:
        start = time.monotonic()
        worker.start()
        last = 0.0
        while True:
            await asyncio.sleep(1.0)
            done = synced()
            if time.monotonic() - last > 10:
                print(f"  {done}/{total} synced after {time.monotonic() - start:.0f} s")
                last = time.monotonic()
            if done >= total:
                break
        elapsed = time.monotonic() - start
        await worker.stop()
        return elapsed

    elapsed = asyncio.run(drain())
    print(f"drained {total} resources in {elapsed:.1f} s: {total / elapsed:.1f} resources/s")
    print(f"requests to SATUSEHAT: {len(sim.calls)}; most in flight at once: {sim.most_in_flight} (concurrency {args.concurrency})")
    state.db.dispose()
    # the cost to local writes: the same visits stored on a fresh database while the worker drains them
    url2 = args.database_url or f"sqlite:///{Path(folder) / 'fhir2.sqlite3'}"
    if not args.database_url:
        s2 = settings(url2, sim.url, audit=False, satusehat_concurrency=args.concurrency, satusehat_timeout=10.0)
        with TestClient(create_app(s2)) as client:
            took_on = store_visits(client, args.visits, args.patients)
        print(f"stored the same with the sync running: {args.visits / took_on:.1f} visits/s ({100 * (took / took_on - 1):+.1f} %)")
    print(f"load average after: {os.getloadavg()}")
    sim.stop()


def store_visits(client: TestClient, visits: int, patients: int) -> float:
    """Store the Patients and ``visits`` visit Bundles; the seconds the visits took."""
    base_records(client)
    for p in range(1, patients):
        client.put(f"/fhir/Patient/p{p}", json=patient(f"p{p}"))
    t0 = time.monotonic()
    for n in range(visits):
        bundle = visit_bundle(n, f"p{n % patients}" if n % patients else "p1")
        r = client.post("/fhir", json=bundle)
        assert r.status_code == 200, r.text
    return time.monotonic() - t0


if __name__ == "__main__":
    main()
