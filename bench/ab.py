"""Paired A/B of two server variants on the Synthea ingest, interleaved Bundle by Bundle (not a test).

On a shared 2-core VM one run's rate moves by +-15-20 % from the next, so two variants run one
after the other differ by more than most changes do. Here both servers run at once, each on a
fresh database, and one client sends every transaction Bundle to both, one after the other (which
goes first alternates), so both meet the same machine, second by second. Each variant's figure
is the sum of its own request times; the ratio B/A of a round is what a change is judged by.

    python -m bench.ab [--baseline DIR] [--env-a K=V ...] [--env-b K=V ...]
                       [--db sqlite|postgresql] [--rounds 3] [--workers 1] [--alone]

Variant A is the code in ``--baseline`` (a checkout, e.g. ``git worktree add /tmp/base <commit>``;
default: this checkout), or with ``--peer sekmet`` the Python peer sekmet-fhir (issue 20's
one-client target is a ratio to it: here both see the same second of the machine); B is this
checkout. ``--env-a`` / ``--env-b`` set environment variables of one variant (e.g.
``FHIR_R4B_MODEL_CHECK=false``). Prints, per round, each variant's summed request seconds and
resources/s, and B/A with the median over the rounds (A/B too: how many times faster B is).

What it does not show: work a server does between requests (a background worker's rounds) runs
while the other variant is answering, so it is not counted. ``--alone`` counts it: each round
runs A, then B (B first every other round), each alone on a fresh database, and takes the whole
send's wall time; the machine's drift then shows in the spread of the rounds (more of them help).
Session 17 found the idle subscription worker's rounds (~8-10 % of one client) this way.
"""

from __future__ import annotations

import argparse
import statistics
import time
from contextlib import ExitStack
from pathlib import Path
from tempfile import TemporaryDirectory

from bench import client, servers
from bench.__main__ import DEFAULT_PG, database, log
from bench.synthea import DEFAULT_DATA, ROOT, bundles_by_level, read_resources


def _pairs(values: list[str]) -> dict[str, str]:
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--env-a/--env-b take KEY=VALUE, got {item!r}")
        out[key] = value
    return out


def _start(args: argparse.Namespace, k: int, folder: Path, stack: ExitStack) -> str:
    """Start variant ``k`` (0: A, 1: B) on a fresh database in ``folder``, stopped when ``stack``
    closes; its FHIR base URL."""
    code, env = (args.baseline, _pairs(args.env_a)) if k == 0 else (ROOT, _pairs(args.env_b))
    folder.mkdir(parents=True)
    port = servers.free_port()
    if k == 0 and args.peer_python is not None:
        cmd, peer_env = servers.sekmet_server(args.peer_python, port, args.workers, folder)
        env = {**peer_env, **env}
    else:
        db_url = stack.enter_context(database(args.db, folder, args.postgres_url))
        cmd = servers.our_server(port, db_url, args.workers)
    stack.enter_context(servers.running(cmd, f"http://127.0.0.1:{port}/fhir/metadata", env, folder / "server.log", cwd=code))
    return f"http://127.0.0.1:{port}/fhir"


def _send(url: str, body: bytes, variant: int) -> None:
    """POST one transaction Bundle; a failure stops the comparison (its figures would mean nothing)."""
    status, _, answer = client.request("POST", url, body, {"Prefer": "return=minimal"})
    if status >= 300:
        raise SystemExit(f"variant {'AB'[variant]}: HTTP {status}: {answer[:300]!r}")


def _round(args: argparse.Namespace, bodies: list[bytes], tmp: Path, number: int) -> tuple[float, float]:
    """One round: both variants on fresh databases; the summed request seconds of A and of B."""
    spent = [0.0, 0.0]
    with ExitStack() as stack:
        urls = [_start(args, k, tmp / f"r{number}-{'ab'[k]}", stack) for k in (0, 1)]
        time.sleep(1.0)  # both settle (the workers' warm-up after start)
        for i, body in enumerate(bodies):
            for k in (0, 1) if i % 2 == 0 else (1, 0):
                started = time.perf_counter()
                _send(urls[k], body, k)
                spent[k] += time.perf_counter() - started
    return spent[0], spent[1]


def _alone(args: argparse.Namespace, bodies: list[bytes], tmp: Path, number: int) -> tuple[float, float]:
    """One ``--alone`` round: A and B one after the other (B first in odd rounds), each alone on a
    fresh database; the wall seconds of each whole send."""
    spent = [0.0, 0.0]
    for k in (0, 1) if number % 2 == 0 else (1, 0):
        with ExitStack() as stack:
            url = _start(args, k, tmp / f"r{number}-{'ab'[k]}", stack)
            time.sleep(1.0)  # the workers' warm-up after start
            started = time.perf_counter()
            for body in bodies:
                _send(url, body, k)
            spent[k] = time.perf_counter() - started
    return spent[0], spent[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path, default=ROOT, help="checkout of variant A's code (default: this one)")
    parser.add_argument("--peer", choices=["sekmet"], help="variant A is the Python peer sekmet-fhir (SQLite) instead of --baseline")
    parser.add_argument("--peer-venv", type=Path, default=servers.default_peer_venv())
    parser.add_argument("--env-a", action="append", default=[], help="KEY=VALUE for variant A's server")
    parser.add_argument("--env-b", action="append", default=[], help="KEY=VALUE for variant B's server")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--postgres-url", default=DEFAULT_PG)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers per server")
    parser.add_argument("--bundle", type=int, default=100, help="entries per transaction Bundle")
    parser.add_argument("--alone", action="store_true", help="each variant alone, one after the other (counts work between requests)")
    args = parser.parse_args()
    args.peer_python = servers.ensure_sekmet(args.peer_venv) if args.peer else None  # installed once, not per round
    by_type = read_resources(args.data)
    bodies = [b for level in bundles_by_level(by_type, args.bundle) for b in level]
    total = sum(len(v) for v in by_type.values())
    first = f"the peer {args.peer}" if args.peer else str(args.baseline)
    log(f"A: {first} {args.env_a or ''}; B: {ROOT} {args.env_b or ''}; {total:,} resources in {len(bodies)} Bundles, {args.db}")
    ratios = []
    with TemporaryDirectory(prefix="bench-ab-") as tmp:
        for n in range(args.rounds):
            a, b = (_alone if args.alone else _round)(args, bodies, Path(tmp), n)
            ratios.append(b / a)
            log(f"  round {n + 1}: A {a:.2f}s ({total / a:,.0f}/s), B {b:.2f}s ({total / b:,.0f}/s), B/A {b / a:.3f}, A/B {a / b:.2f}x")
    median = statistics.median(ratios)
    what = "wall time, each alone" if args.alone else "request time"
    print(
        f"B/A {what}: median {median:.3f} over {len(ratios)} rounds ({', '.join(f'{r:.3f}' for r in ratios)});"
        f" B is {1 / median:.2f}x as fast as A"
    )


if __name__ == "__main__":
    main()
