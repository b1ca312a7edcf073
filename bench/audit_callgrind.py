"""What the audit trail costs a read by id, counted in CPU instructions (not a test).

Wall-clock and CPU-time figures on a shared 2-core VM move by +-20 % from one run to
the next (other tenants' steal time), more than the effect being measured. Valgrind's
callgrind counts the instructions a process executes: the same inputs give the same
count whatever else the machine does. This starts the server twice under callgrind
(one worker, SQLite, audit on and off, side by side), creates Patients, warms up, zeroes
the counters, sends ``--reads`` reads by id over one keep-alive connection, waits for
the audit flush and dumps the counters; then prints instructions per read for each and
the difference.

The flush interval is set long (``FHIR_AUDIT_FLUSH_INTERVAL=1000``) so the audit trail
is written in full batches of 1,000 events (``max_batch``), as at ~5,000 reads/s per
worker with the default 0.2 s: under valgrind the server runs ~50x slower, and a 0.2 s
interval would flush every few reads.

    python -m bench.audit_callgrind [--reads 3000]   # needs valgrind (Debian package)

Takes ~6 minutes on 2 cores (start-up under valgrind is most of it).
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
from pathlib import Path

from bench import data

_PATIENTS = 50


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


def _start(folder: Path, audit: bool, port: int) -> subprocess.Popen[bytes]:
    env = dict(
        os.environ,
        FHIR_AUDIT=str(audit).lower(),
        FHIR_AUDIT_FLUSH_INTERVAL="1000",
        FHIR_EXPORT_WORKER="false",
        FHIR_DATABASE_URL=f"sqlite:///{folder / 'fhir.sqlite3'}",
    )
    server = shutil.which("fhir-server") or str(Path(sys.executable).with_name("fhir-server"))
    return subprocess.Popen(
        [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={folder / 'callgrind.out'}",
            server,
            "serve",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        env=env,
        stdout=open(folder / "server.log", "wb"),
        stderr=subprocess.STDOUT,
    )


def _drive(port: int, pid: int, reads: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    ids = []
    for n in range(_PATIENTS):
        conn.request("POST", "/fhir/Patient", json.dumps(data.patient(n)), {"content-type": "application/fhir+json"})
        response = conn.getresponse()
        ids.append(json.loads(response.read())["id"])
    for i in range(300):  # warm-up: caches, lazily imported code
        conn.request("GET", f"/fhir/Patient/{ids[i % _PATIENTS]}")
        conn.getresponse().read()
    time.sleep(1)
    subprocess.run(["callgrind_control", "-z", str(pid)], check=True, capture_output=True)
    for i in range(reads):
        conn.request("GET", f"/fhir/Patient/{ids[i % _PATIENTS]}")
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise SystemExit(f"read answered {response.status}")


def _instructions(folder: Path, pid: int) -> int:
    before = set(folder.glob("callgrind.out*"))
    subprocess.run(["callgrind_control", "-d", str(pid)], check=True, capture_output=True)
    for _ in range(60):
        new = set(folder.glob("callgrind.out*")) - before
        if new:
            time.sleep(1)
            text = max(new).read_text(errors="replace")
            match = re.search(r"^summary: (\d+)", text, re.M)
            if match:
                return int(match.group(1))
        time.sleep(1)
    raise SystemExit("callgrind did not write its dump")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reads", type=int, default=3000)
    parser.add_argument("--start-timeout", type=float, default=900)
    parser.add_argument("--keep", type=Path, help="copy the callgrind dumps here (for callgrind_annotate)")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    with tempfile.TemporaryDirectory() as tmp:
        runs = {}
        for audit, port in ((True, 8231), (False, 8232)):
            folder = Path(tmp) / ("on" if audit else "off")
            folder.mkdir()
            runs[audit] = (folder, port, _start(folder, audit, port))
        try:
            for _, port, _ in runs.values():
                _wait_ready(port, args.start_timeout)
            counts = {}
            for audit, (folder, port, proc) in runs.items():
                _drive(port, proc.pid, args.reads)
                time.sleep(5)  # the audit flusher's last full batch
                counts[audit] = _instructions(folder, proc.pid) / args.reads
                if args.keep:
                    target = args.keep / folder.name
                    target.mkdir(parents=True, exist_ok=True)
                    for dump in folder.glob("callgrind.out*"):
                        shutil.copy(dump, target)
        finally:
            for _, _, proc in runs.values():
                proc.send_signal(signal.SIGINT)
            for _, _, proc in runs.values():
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
    on, off = counts[True], counts[False]
    print(f"instructions per read by id (whole server process, {args.reads} reads, 1 worker, SQLite)")
    print(f"  audit off: {off:12,.0f}")
    print(f"  audit on : {on:12,.0f}")
    print(f"  audit costs {on - off:,.0f} instructions per read = {100 * (on - off) / off:.1f} % of a read")


if __name__ == "__main__":
    main()
