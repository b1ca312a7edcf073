"""Subscriptions benchmark: commit-to-receipt latency, and create throughput with 0 / 100 / 1,000
active subscriptions (issue 16: p50 < 100 ms idle; throughput with subscriptions >= 80 % of none).

    python -m bench.subscriptions_bench [--duration 10] [--connections 16] [--latency-count 200] [--latency-only]

One server process on a fresh SQLite file (``--backend postgres``: a throw-away schema in
FHIR_TEST_POSTGRES_URL; or an empty --database-url of your own), a receiver thread on 127.0.0.1
(allowed by FHIR_SUBSCRIPTION_ALLOWED_NETWORKS). Latency: a create's response (the commit has
happened) to the receiver getting its notification, creates one at a time. Throughput: wrk POSTs
Patients for --duration seconds; the subscriptions are topic-based on Patient with a filter each
(family=SubN), so they are matched (in memory, ``subscriptions/rowmatch.py``) but none fires, as when
many clinics each follow their own patients. Prints the machine's load average before each run:
the figures only mean something on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
import urllib.request
from contextlib import ExitStack
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench import load
from bench.servers import free_port, our_server, running
from tests.conftest import database

TOPIC = "https://fhir-server.id/SubscriptionTopic/Patient-create"
BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"


def subscription(endpoint: str, family: str) -> dict[str, Any]:
    return {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "bench",
        "criteria": TOPIC,
        "_criteria": {"extension": [{"url": BACKPORT + "backport-filter-criteria", "valueString": f"Patient?family={family}"}]},
        "channel": {
            "type": "rest-hook",
            "endpoint": endpoint,
            "payload": "application/fhir+json",
            "_payload": {"extension": [{"url": BACKPORT + "backport-payload-content", "valueCode": "id-only"}]},
        },
    }


class Receiver:
    def __init__(self) -> None:
        self.arrivals: dict[str, float] = {}
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                now = time.monotonic()
                bundle = json.loads(body)
                for entry in bundle["entry"][1:]:
                    with outer.lock:
                        outer.arrivals.setdefault(entry["fullUrl"].rsplit("/", 1)[-1], now)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def post(base: str, path: str, resource: dict[str, Any]) -> dict[str, Any]:
    req = urllib.request.Request(
        f"{base}/{path}", data=json.dumps(resource).encode(), headers={"Content-Type": "application/fhir+json"}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def get(base: str, path: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{base}/{path}", timeout=30) as r:
        return json.loads(r.read())


def wait_active(base: str, sub_id: str) -> None:
    deadline = time.monotonic() + 60
    while get(base, f"Subscription/{sub_id}")["status"] != "active":
        if time.monotonic() > deadline:
            raise RuntimeError(f"Subscription/{sub_id} not active")
        time.sleep(0.05)


def latency(base: str, receiver: Receiver, count: int) -> dict[str, float]:
    sub = post(base, "Subscription", subscription(receiver.url, "Latency"))
    wait_active(base, sub["id"])
    sent: dict[str, float] = {}
    for _ in range(count):
        created = post(base, "Patient", {"resourceType": "Patient", "name": [{"family": "Latency"}]})
        sent[created["id"]] = time.monotonic()
        time.sleep(0.02)
    deadline = time.monotonic() + 60
    while len([i for i in sent if i in receiver.arrivals]) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    ms = sorted((receiver.arrivals[i] - t) * 1000 for i, t in sent.items() if i in receiver.arrivals)
    return {
        "received": len(ms),
        "p50_ms": round(statistics.median(ms), 1),
        "p95_ms": round(ms[int(len(ms) * 0.95) - 1], 1),
        "max_ms": round(ms[-1], 1),
    }


def throughput(base: str, duration: int, connections: int) -> float:
    bodies = [json.dumps({"resourceType": "Patient", "name": [{"family": f"Load{i}"}], "gender": "female"}) for i in range(50)]
    result = load.run(
        "create",
        "fhir-server",
        base.rsplit("/fhir", 1)[0],
        load.post_script("/fhir/Patient", bodies),
        duration=duration,
        connections=connections,
    )
    if result.errors:
        raise SystemExit(f"{result.errors} failed requests under load: {result.statuses} {result.sample_error}")
    return result.requests / result.seconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--latency-count", type=int, default=200)
    ap.add_argument("--database-url", default="", help="an empty database of your own (default: --backend)")
    ap.add_argument(
        "--backend", choices=("sqlite", "postgres"), default="sqlite", help="postgres: a throw-away schema in FHIR_TEST_POSTGRES_URL"
    )
    ap.add_argument("--latency-only", action="store_true", help="skip the throughput runs")
    args = ap.parse_args()
    report: dict[str, Any] = {"load_average_at_start": os.getloadavg(), "cpus": os.cpu_count()}
    receiver = Receiver()
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        # an empty database each run: subscriptions left by an earlier run would count in "0"
        url = args.database_url or stack.enter_context(database(args.backend, Path(tmp)))
        port = free_port()
        base = f"http://127.0.0.1:{port}/fhir"
        env = {"FHIR_SUBSCRIPTION_ALLOWED_NETWORKS": "127.0.0.1/32", "FHIR_BASE_URL": base}
        try:
            with running(our_server(port, url, 1), f"{base}/metadata", env=env, log=Path(tmp) / "server.log"):
                with urllib.request.urlopen(f"{base}/Subscription?_summary=count") as r:
                    if json.load(r)["total"]:
                        raise SystemExit("the database already holds subscriptions: give an empty one")
                report["latency"] = latency(base, receiver, args.latency_count)
                report["load_average_after_latency"] = os.getloadavg()
                if args.latency_only:
                    print(json.dumps(report, indent=2))
                    return
                results = {}
                made = 1  # the latency subscription (its filter matches no load Patient)
                for target in (0, 100, 1000):
                    while made < target:
                        post(base, "Subscription", subscription(receiver.url, f"Sub{made}"))
                        made += 1
                    time.sleep(2)  # let the handshakes pass
                    results[target] = round(throughput(base, args.duration, args.connections), 1)
                    print(f"{target} subscriptions: {results[target]} creates/s (load {os.getloadavg()[0]:.2f})", flush=True)
                report["creates_per_s"] = results
                report["ratio_vs_none"] = {k: round(v / results[0], 3) for k, v in results.items()}
        finally:
            receiver.stop()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
