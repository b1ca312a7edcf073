"""Instructions per interaction, counted by callgrind, for two variants side by side (not a test).

Wall-clock and CPU-time figures on a shared 2-core VM move by +-20 % from one run to
the next (other tenants' steal time, other jobs), more than the effects we look for.
Valgrind's callgrind counts the instructions a process executes: the same inputs give
the same count whatever else the machine does. This starts the server twice under
callgrind (one worker, SQLite), creates Patients, warms up, zeroes the counters, sends
``--count`` interactions over one keep-alive connection, waits for the audit flush and
dumps the counters; then prints instructions per interaction for each variant and the
difference.

Variants (``--compare``):
- ``audit``: this checkout with the audit trail on and off (what auditing costs);
- ``subscriptions``: this checkout with the subscription worker off and on (what its waiting
  costs a server: the whole process is counted, background tasks included);
- ``baseline``: this checkout against the code in ``--baseline DIR`` (for example an
  older commit: ``git worktree add /tmp/old <commit>``), both with the audit trail on;
- ``subscription-count``: this checkout with no subscription and with ``--subscriptions N``
  active ones (R4 criteria ``Patient?family=SubN``: each is matched against every created
  Patient, none fires; created through a plain server run before valgrind starts), what
  matching costs a create (issue 16: create throughput with 1,000 at least 80 % of none);
- ``satusehat``: the SATUSEHAT sync off, and on as the server runs it (a child process of its own,
  not counted: what it costs the process that serves requests); ``satusehat-inline``: off, and on
  the server's event loop (``FHIR_SATUSEHAT_WORKER_PROCESS=false``: everything counted). Both
  against the tests' simulator (127.0.0.1), with ``--interaction visit``.

Interactions (``--interaction``): ``read`` (GET by id), ``search`` (a Patient by NIK,
``identifier=``), ``create`` (POST, the body comes back), ``visit`` (a transaction Bundle of
an Encounter, 2 Conditions and 5 Observations; counted per resource, the counters dumped once the
sync has sent them all) or ``synthea`` (the Synthea sample's first ``--count`` transaction Bundles of
100 PUTs, as bench.synthea sends them; counted per resource).

The flush interval is set long (``FHIR_AUDIT_FLUSH_INTERVAL=1000``) so audit events
that are not written with a write go out in full batches of 1,000 (``max_batch``), as
at ~5,000 reads/s per worker with the default 0.2 s: under valgrind the server runs ~50x
slower, and a 0.2 s interval would flush every few requests.

    python -m bench.callgrind [--compare audit|baseline] [--baseline DIR]
                              [--interaction read|create] [--count 3000]

Needs valgrind (Debian package). Takes ~6-15 minutes on 2 cores (start-up under valgrind
is much of it). Run one at a time: two callgrind runs at once have failed to dump.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from bench import data

_PATIENTS = 50
_HERE = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Variant:
    name: str
    #: the checkout whose fhir_server package the server runs (its working directory)
    source: Path
    audit: bool
    #: settings of this variant (FHIR_* variables)
    env: tuple[tuple[str, str], ...] = ()
    #: active subscriptions created before the measured run
    subscriptions: int = 0


def _wait_ready(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("GET", "/fhir/metadata")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(2)
    raise SystemExit(f"server on port {port} did not start within {timeout:.0f} s")


def _env(variant: Variant, folder: Path) -> dict[str, str]:
    env = dict(
        os.environ,
        FHIR_AUDIT=str(variant.audit).lower(),
        FHIR_AUDIT_FLUSH_INTERVAL="1000",
        FHIR_EXPORT_WORKER="false",
        FHIR_DATABASE_URL=f"sqlite:///{folder / 'fhir.sqlite3'}",
    )
    env.update(variant.env)
    return env


def _start(variant: Variant, folder: Path, port: int) -> subprocess.Popen[bytes]:
    env = _env(variant, folder)
    # `python -m` from the variant's checkout: its own fhir_server package comes first on sys.path
    command = [sys.executable, "-m", "fhir_server.cli", "serve", "--port", str(port), "--workers", "1"]
    return subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={folder / 'callgrind.out'}", *command],
        cwd=variant.source,
        env=env,
        stdout=open(folder / "server.log", "wb"),
        stderr=subprocess.STDOUT,
    )


def _subscribe(variant: Variant, folder: Path, port: int) -> None:
    """Create ``variant.subscriptions`` active subscriptions in the variant's database, through a
    plain (not valgrind) server run: batch Bundles of 100, then wait until all are active."""
    if not variant.subscriptions:
        return
    command = [sys.executable, "-m", "fhir_server.cli", "serve", "--port", str(port), "--workers", "1"]
    with open(folder / "prepare.log", "wb") as log:
        proc = subprocess.Popen(command, cwd=variant.source, env=_env(variant, folder), stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_ready(port, 120)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        for first in range(0, variant.subscriptions, 100):
            entries = [
                {"resource": _subscription(n), "request": {"method": "POST", "url": "Subscription"}}
                for n in range(first, min(first + 100, variant.subscriptions))
            ]
            _send(conn, "POST", "/fhir", {"resourceType": "Bundle", "type": "batch", "entry": entries})
        deadline = time.monotonic() + 300
        while json.loads(_send(conn, "GET", "/fhir/Subscription?status=active&_summary=count"))["total"] < variant.subscriptions:
            if time.monotonic() > deadline:
                raise SystemExit("the subscriptions did not become active")
            time.sleep(1)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)


def _subscription(n: int) -> dict:
    return {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "bench",
        "criteria": f"Patient?family=Sub{n}",
        "channel": {"type": "rest-hook", "endpoint": "http://127.0.0.1:9/hook"},
    }


def _send(conn: http.client.HTTPConnection, method: str, path: str, body: dict | None = None) -> bytes:
    headers = {"content-type": "application/fhir+json"} if body is not None else {}
    conn.request(method, path, json.dumps(body) if body is not None else None, headers)
    response = conn.getresponse()
    payload = response.read()
    if response.status >= 400:
        raise SystemExit(f"{method} {path} answered {response.status}: {payload[:300]!r}")
    return payload


def _drive(port: int, pid: int, interaction: str, count: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    if interaction == "synthea":
        _drive_synthea(conn, pid, count)
        return
    if interaction == "visit":
        _drive_visits(conn, pid, count)
        return
    ids = [json.loads(_send(conn, "POST", "/fhir/Patient", data.patient(n)))["id"] for n in range(_PATIENTS)]

    niks = [quote(f"{data.NIK_SYSTEM}|{data.nik_of(data.patient(n))}") for n in range(_PATIENTS)]

    def one(i: int) -> None:
        if interaction == "read":
            _send(conn, "GET", f"/fhir/Patient/{ids[i % _PATIENTS]}")
        elif interaction == "search":
            _send(conn, "GET", f"/fhir/Patient?identifier={niks[i % _PATIENTS]}&_count=20")
        else:
            _send(conn, "POST", "/fhir/Patient", data.patient(_PATIENTS + i))

    for i in range(100 if interaction == "create" else 300):  # warm-up: caches, lazily imported code
        one(i)
    time.sleep(1)
    subprocess.run(["callgrind_control", "-z", str(pid)], check=True, capture_output=True)
    for i in range(count):
        one(1000 + i)


#: the Synthea sample (``--data``)
_synthea_dir: Path | None = None


def _synthea_bundles() -> list[bytes]:
    from bench import synthea

    folder = _synthea_dir or synthea.DEFAULT_DATA
    return [b for level in synthea.bundles_by_level(synthea.read_resources(folder), 100) for b in level]


def _drive_synthea(conn: http.client.HTTPConnection, pid: int, count: int) -> None:
    """The Synthea sample's first ``count`` PUT transaction Bundles, in dependency order, after
    one warm-up Bundle of Patients that are not in the sample."""
    warm = [
        {"resource": {**data.patient(n), "id": f"warm-{n}"}, "request": {"method": "PUT", "url": f"Patient/warm-{n}"}} for n in range(50)
    ]
    _send_raw(conn, json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": warm}).encode())
    time.sleep(1)
    subprocess.run(["callgrind_control", "-z", str(pid)], check=True, capture_output=True)
    for body in _synthea_bundles()[:count]:
        _send_raw(conn, body)


#: the simulator the ``satusehat`` variants sync to (None: not started)
_sim: Any = None


def _drive_visits(conn: http.client.HTTPConnection, pid: int, count: int) -> None:
    """``count`` visits, one transaction Bundle each, after 10 for warming up; then waits until
    the sync (if on) has sent every one, so that its work is in the counters."""
    from bench.satusehat_bench import RESOURCES_PER_VISIT, visit_entries
    from tests.satusehat.conftest import doctor, location, patient

    for r in (patient(), doctor(), location()):
        _send(conn, "PUT", f"/fhir/{r['resourceType']}/{r['id']}", r)
    offset = int(time.time() * 1000)  # unique visit ids: both variants sync to one simulator

    def visits(first: int, n: int) -> None:
        for k in range(first, first + n):
            _send_raw(conn, json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": visit_entries(k)}).encode())

    before = _synced_count()
    visits(offset, 10)
    time.sleep(1)
    subprocess.run(["callgrind_control", "-z", str(pid)], check=True, capture_output=True)
    visits(offset + 10, count)
    wanted = before + (count + 10) * RESOURCES_PER_VISIT
    deadline = time.monotonic() + 1800
    while _sim is not None and time.monotonic() < deadline:
        time.sleep(2)
        synced = _synced_count()
        if synced == before or synced >= wanted:  # the sync is off, or has sent everything
            if synced == before:
                time.sleep(10)
                if _synced_count() != before:
                    continue
            break


def _synced_count() -> int:
    return sum(len(_sim.resources(t)) for t in ("Encounter", "Condition", "Observation")) if _sim is not None else 0


def _send_raw(conn: http.client.HTTPConnection, body: bytes) -> None:
    conn.request("POST", "/fhir", body, {"content-type": "application/fhir+json", "prefer": "return=minimal"})
    response = conn.getresponse()
    payload = response.read()
    if response.status >= 400:
        raise SystemExit(f"transaction answered {response.status}: {payload[:300]!r}")


def _per(interaction: str, count: int) -> int:
    """What the instruction count is divided by: requests, or resources for Synthea Bundles."""
    if interaction == "visit":
        return count * 8
    if interaction != "synthea":
        return count
    return sum(len(json.loads(b)["entry"]) for b in _synthea_bundles()[:count])


def _instructions(folder: Path, pid: int) -> int:
    before = set(folder.glob("callgrind.out*"))
    subprocess.run(["callgrind_control", "-d", str(pid)], check=True, capture_output=True)
    for _ in range(120):
        new = set(folder.glob("callgrind.out*")) - before
        if new:
            time.sleep(1)
            text = max(new).read_text(errors="replace")
            match = re.search(r"^summary: (\d+)", text, re.M)
            if match:
                return int(match.group(1))
        time.sleep(1)
    raise SystemExit("callgrind did not write its dump")


def _variants(args: argparse.Namespace) -> tuple[Variant, Variant]:
    if args.compare == "audit":
        return Variant("audit off", _HERE, False), Variant("audit on", _HERE, True)
    if args.compare == "subscriptions":  # what the subscription worker costs a server with none
        off = (("FHIR_SUBSCRIPTION_WORKER", "false"),)
        return Variant("subscription worker off", _HERE, True, off), Variant("subscription worker on", _HERE, True)
    if args.compare == "subscription-count":
        allow = (("FHIR_SUBSCRIPTION_ALLOWED_NETWORKS", "127.0.0.1/32"),)
        return Variant("no subscription", _HERE, True, allow), Variant(
            f"{args.subscriptions} subscriptions", _HERE, True, allow, args.subscriptions
        )
    if args.compare.startswith("satusehat"):
        from tests.satusehat.simulator import CLIENT_ID, CLIENT_SECRET, ORG

        sync = (
            ("FHIR_SATUSEHAT_URL", _sim.url),
            ("FHIR_SATUSEHAT_CLIENT_ID", CLIENT_ID),
            ("FHIR_SATUSEHAT_CLIENT_SECRET", CLIENT_SECRET),
            ("FHIR_SATUSEHAT_ORGANIZATION_ID", ORG),
        )
        none = Variant("sync off", _HERE, True, (*sync, ("FHIR_SATUSEHAT_WORKER", "false")))
        if args.compare == "satusehat-inline":
            return none, Variant("sync on the event loop", _HERE, True, (*sync, ("FHIR_SATUSEHAT_WORKER_PROCESS", "false")))
        return none, Variant("sync in its own process", _HERE, True, sync)
    if args.baseline is None:
        raise SystemExit("--compare baseline needs --baseline DIR (a checkout of the older code)")
    return Variant(f"baseline {args.baseline}", args.baseline.resolve(), True), Variant("this checkout", _HERE, True)


def measure(variants: tuple[Variant, Variant], interaction: str, count: int, start_timeout: float, keep: Path | None) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        runs = []
        for n, variant in enumerate(variants):
            folder = Path(tmp) / f"v{n}"
            folder.mkdir()
            port = 8231 + n
            _subscribe(variant, folder, port)
            runs.append((folder, port, _start(variant, folder, port)))
        try:
            for _, port, _ in runs:
                _wait_ready(port, start_timeout)
            counts = []
            for folder, port, proc in runs:
                _drive(port, proc.pid, interaction, count)
                time.sleep(5)  # the audit flusher's last full batch
                counts.append(_instructions(folder, proc.pid) / _per(interaction, count))
                if keep:
                    target = keep / folder.name
                    target.mkdir(parents=True, exist_ok=True)
                    for dump in folder.glob("callgrind.out*"):
                        shutil.copy(dump, target)
        finally:
            for _, _, proc in runs:
                proc.send_signal(signal.SIGINT)
            for _, _, proc in runs:
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--compare", choices=["audit", "baseline", "subscriptions", "subscription-count", "satusehat", "satusehat-inline"], default="audit"
    )
    parser.add_argument("--baseline", type=Path, help="checkout of the code to compare with (--compare baseline)")
    parser.add_argument("--interaction", choices=["read", "search", "create", "synthea", "visit"], default="read")
    parser.add_argument("--count", type=int, default=3000, help="measured interactions per variant (synthea: Bundles, at most 74)")
    parser.add_argument("--data", type=Path, help="the Synthea sample's folder (--interaction synthea)")
    parser.add_argument("--subscriptions", type=int, default=1000, help="active subscriptions (--compare subscription-count)")
    parser.add_argument("--start-timeout", type=float, default=900)
    parser.add_argument("--keep", type=Path, help="copy the callgrind dumps here (for callgrind_annotate)")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    global _synthea_dir, _sim
    _synthea_dir = args.data
    if args.compare.startswith("satusehat"):
        from tests.satusehat.simulator import Simulator

        _sim = Simulator().start()
    variants = _variants(args)
    try:
        first, second = measure(variants, args.interaction, args.count, args.start_timeout, args.keep)
    finally:
        if _sim is not None:
            _sim.stop()
    what = {"synthea": "resource of the Synthea PUT transactions", "visit": "resource of the visit Bundles"}.get(
        args.interaction, args.interaction
    )
    print(f"instructions per {what} (whole server process, {args.count} requests, 1 worker, SQLite)")
    width = max(len(v.name) for v in variants)
    print(f"  {variants[0].name:<{width}} : {first:12,.0f}")
    print(f"  {variants[1].name:<{width}} : {second:12,.0f}")
    print(f"  difference {second - first:+,.0f} instructions = {100 * (second - first) / first:+.1f} %")


if __name__ == "__main__":
    main()
