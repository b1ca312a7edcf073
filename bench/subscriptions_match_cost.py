"""What matching one created Patient costs the subscription matcher with 0 / 100 / 1,000 active
subscriptions (CPU time of the matcher's round, in this process; not a test).

    python -m bench.subscriptions_match_cost [--counts 0,100,1000] [--changes 50]

An app on a fresh SQLite file without a worker; N topic subscriptions on Patient-create with a
filter each (``family=SubN``, as bench/subscriptions_bench.py: none fires); then, per change, one
Patient is created and the matcher's round that consumes it is timed with ``time.process_time``
(the process's own CPU time: steadier than wall-clock on a shared machine, still noisier than
bench.callgrind). Prints milliseconds of matcher CPU per created Patient for each N.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient

from bench.subscriptions_bench import subscription
from fhir_server.app import create_app
from fhir_server.config import Settings
from fhir_server.subscriptions.setup import new_worker

JSON = {"Content-Type": "application/fhir+json"}


def measure(count: int, changes: int, folder: Path) -> float:
    settings = Settings(
        database_url=f"sqlite:///{folder / f'm{count}.sqlite3'}",
        base_url="http://testserver/fhir",
        subscription_worker=False,
        subscription_allowed_networks="127.0.0.1/32",
        export_worker=False,
    )
    app = create_app(settings)
    with TestClient(app) as client:
        state = app.state.fhir
        for first in range(0, count, 100):
            entries = [
                {"resource": subscription("http://127.0.0.1:9/hook", f"Sub{n}"), "request": {"method": "POST", "url": "Subscription"}}
                for n in range(first, min(first + 100, count))
            ]
            r = client.post("/fhir", content=json.dumps({"resourceType": "Bundle", "type": "batch", "entry": entries}), headers=JSON)
            assert r.status_code == 200, r.text
        matcher = new_worker(state, owner="bench").matcher
        loop = asyncio.new_event_loop()

        def drain() -> None:
            while loop.run_until_complete(matcher.run_once(None))[0]:
                pass

        drain()
        for n in range(5):  # warm-up: lazily built parsers, caches
            client.post("/fhir/Patient", json={"resourceType": "Patient", "name": [{"family": f"Warm{n}"}]}, headers=JSON)
            drain()
        spent = []
        for n in range(changes):
            client.post("/fhir/Patient", json={"resourceType": "Patient", "name": [{"family": f"Load{n}"}]}, headers=JSON)
            start = time.process_time()
            drain()
            spent.append(time.process_time() - start)
        loop.close()
        return statistics.median(spent) * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--counts", default="0,100,1000")
    ap.add_argument("--changes", type=int, default=50)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for count in (int(c) for c in args.counts.split(",")):
            ms = measure(count, args.changes, Path(tmp))
            print(f"{count:5d} subscriptions: matcher {ms:.2f} ms CPU per created Patient (median of {args.changes})", flush=True)


if __name__ == "__main__":
    main()
