"""What the audit trail costs a read by id over HTTP: audit on vs ``FHIR_AUDIT=false`` (not a test).

Starts our server twice side by side (same settings, each on its own fresh
SQLite file, one with the audit trail on and one off), preloads the same
Patients into each, then alternates wrk read-by-id runs between them for
``--rounds`` rounds and prints, per run and as medians:

- req/s, and the on/off ratio;
- server CPU µs per request: user+system CPU of the server's whole process
  group (uvicorn and its workers, every thread, the audit flusher included)
  divided by the requests served, split into the workers' main threads (the
  event loop: the requests) and their other threads (the audit flusher). On a
  shared machine this is much steadier than req/s, which moves with whatever
  else runs.

    python -m bench.audit_http [--rounds 3] [--duration 6] [--patients 300] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from contextlib import ExitStack
from pathlib import Path

from bench import load, servers
from bench.__main__ import Loaded, analyze, preload

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(path: str) -> list[str] | None:
    try:
        with open(path) as f:
            return f.read().rsplit(")", 1)[1].split()  # fields from the 3rd (state) on
    except OSError:
        return None


def group_cpu_s(pgid: int) -> tuple[float, float]:
    """(main threads, other threads) user+system CPU seconds of the live processes of a
    process group, from /proc. The main thread of a worker runs the event loop (the
    requests); the others are the audit flusher and thread pools."""
    main = other = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat(f"/proc/{entry}/stat")
        if fields is None or int(fields[2]) != pgid:  # pgrp
            continue
        for tid in os.listdir(f"/proc/{entry}/task"):
            t = _stat(f"/proc/{entry}/task/{tid}/stat")
            if t is not None:
                ticks = int(t[11]) + int(t[12])  # utime, stime
                if tid == entry:
                    main += ticks
                else:
                    other += ticks
    return main / _TICK, other / _TICK


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=6)
    ap.add_argument("--patients", type=int, default=300)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--connections", type=int, default=32)
    args = ap.parse_args()
    runs: dict[str, list[tuple[float, float]]] = {"on": [], "off": []}
    with ExitStack() as stack:
        targets = {}
        for name, audit in (("on", "true"), ("off", "false")):
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"fhir-audit-{name}-")))
            url = f"sqlite:///{tmp / 'bench.sqlite3'}"
            port = servers.free_port()
            base = f"http://127.0.0.1:{port}"
            proc = stack.enter_context(
                servers.running(
                    servers.our_server(port, url, args.workers), f"{base}/fhir/metadata", env={"FHIR_AUDIT": audit}, log=tmp / "server.log"
                )
            )
            loaded = Loaded()
            preload(f"{base}/fhir", loaded, args.patients, per_bundle=50, threads=2, encounters=1, extras=True, label=f"audit {name}")
            analyze(url)
            script = load.get_paths_script([f"/fhir/Patient/{i}" for i in loaded.ids[:1000]])
            load.run("warm-up", name, base, script, duration=1, connections=args.connections)
            targets[name] = (proc.pid, base, script)
        for r in range(args.rounds):
            for name in ("on", "off") if r % 2 == 0 else ("off", "on"):
                pgid, base, script = targets[name]
                main0, other0 = group_cpu_s(pgid)
                res = load.run("read", name, base, script, duration=args.duration, connections=args.connections)
                main1, other1 = group_cpu_s(pgid)
                if res.errors:
                    print(f"  audit {name}: {res.errors} errors {res.statuses}")
                n = res.requests or 1
                per_req = (main1 - main0 + other1 - other0) / n * 1e6
                runs[name].append((res.rps, per_req))
                print(
                    f"round {r + 1} audit {name:3s}: {res.rps:9,.0f} req/s  {per_req:6.1f} µs server CPU/request"
                    f" (main threads {(main1 - main0) / n * 1e6:5.1f}, other threads {(other1 - other0) / n * 1e6:4.1f})"
                )
    med = {k: (statistics.median(x for x, _ in v), statistics.median(y for _, y in v)) for k, v in runs.items()}
    print(f"median audit on : {med['on'][0]:9,.0f} req/s  {med['on'][1]:6.1f} µs CPU/request")
    print(f"median audit off: {med['off'][0]:9,.0f} req/s  {med['off'][1]:6.1f} µs CPU/request")
    print(
        f"audit on/off: throughput {med['on'][0] / med['off'][0]:.1%}, "
        f"CPU per request +{med['on'][1] - med['off'][1]:.1f} µs ({med['on'][1] / med['off'][1] - 1:+.1%})"
    )


if __name__ == "__main__":
    main()
