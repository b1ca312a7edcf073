"""What the audit trail costs a read by id inside the real app, without HTTP (not a test).

Runs ``create_app`` in-process on a fresh SQLite file, preloads Patients, then
calls the ASGI app directly with ``GET /fhir/Patient/<id>`` scopes (every layer:
audit, guard, HotPath, the SQLite read) and reports CPU µs per request: the
whole process (the audit flusher included) and the main thread. Audit on and
off run alternately in fresh subprocesses; the best run of each is kept. Far
steadier than HTTP figures on a shared machine (no uvicorn, sockets or wrk).

    python -m bench.audit_app [--requests 30000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import MutableMapping
from typing import Any


def measure(audit: bool, n: int, reps: int = 5) -> tuple[float, float]:
    """(process, main thread) CPU µs per read, best of ``reps`` runs of ``n`` reads."""
    from fastapi.testclient import TestClient

    from fhir_server.app import create_app
    from fhir_server.config import Settings

    tmp = tempfile.mkdtemp(prefix="audit-app-")
    app = create_app(Settings(database_url=f"sqlite:///{tmp}/bench.sqlite3", audit=audit, export_worker=False))
    with TestClient(app) as tc:  # runs the lifespan: migrations, the recorder
        ids = [
            tc.post(
                "/fhir/Patient",
                content=json.dumps({"resourceType": "Patient", "gender": "female"}),
                headers={"Content-Type": "application/fhir+json"},
            ).json()["id"]
            for _ in range(300)
        ]

        def scope(i: int) -> dict:
            return {
                "type": "http",
                "asgi": {"version": "3.0", "spec_version": "2.3"},
                "http_version": "1.1",
                "server": ("127.0.0.1", 8080),
                "client": ("127.0.0.1", 50000 + i % 100),
                "scheme": "http",
                "method": "GET",
                "root_path": "",
                "path": f"/fhir/Patient/{ids[i % len(ids)]}",
                "raw_path": b"",
                "query_string": b"",
                "state": {},
                "headers": [(b"host", b"127.0.0.1:8080"), (b"user-agent", b"wrk/4.2.0"), (b"accept", b"*/*")],
            }

        statuses: set[int] = set()

        async def receive() -> dict:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.add(message["status"])

        async def run(k: int) -> None:
            for i in range(k):
                await app(scope(i), receive, send)

        asyncio.run(run(2000))  # warm-up
        best_process = best_main = float("inf")
        for _ in range(reps):
            c0, t0 = time.process_time(), time.thread_time()
            asyncio.run(run(n))
            time.sleep(0.5)  # the flusher writes the last batch
            best_process = min(best_process, (time.process_time() - c0) / n * 1e6)
            best_main = min(best_main, (time.thread_time() - t0) / n * 1e6)
        assert statuses == {200}, statuses
    return best_process, best_main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=30_000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--child", choices=["on", "off"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(args.child == "on", args.requests)))
        return
    best: dict[str, tuple[float, float]] = {}
    for _ in range(args.rounds):
        for mode in ("on", "off"):
            out = subprocess.run(
                [sys.executable, "-m", "bench.audit_app", "--child", mode, "--requests", str(args.requests)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            proc, main_thread = json.loads(out.strip().splitlines()[-1])
            print(f"audit {mode:3s}: {proc:6.2f} µs CPU per read (main thread {main_thread:6.2f})", flush=True)
            if mode not in best or proc < best[mode][0]:
                best[mode] = (proc, main_thread)
    on, off = best["on"], best["off"]
    print(
        f"best: audit on {on[0]:.2f} µs (main thread {on[1]:.2f}), off {off[0]:.2f} µs -> the audit trail "
        f"adds {on[0] - off[0]:.2f} µs per read ({on[1] - off[1]:.2f} on the main thread)"
    )


if __name__ == "__main__":
    main()
