"""Micro-benchmark of write validation: the cost per resource of the checks a write runs.

Times ``ResourceService.validate`` (the R4 structure checker with the core-extension
checks, the fhir.resources R4B model, the SATUSEHAT administrativeCode walk) on the
Synthea sample (``shared/data/synthea-10-patients``, 7,160 resources, Apache-2.0), each
resource stamped as a write stamps it. Prints the best of ``--runs`` passes per resource
type and for all resources, in CPU microseconds per resource (``time.process_time``:
waiting for a core on a busy machine is not counted, contention for caches still is),
for the structure checker alone, without and with the R4B model check.

    python -m bench.validation_bench [--data DIR] [--runs 5]
    python -m bench.validation_bench --instructions   # needs valgrind; ~3 minutes

``--instructions`` counts CPU instructions instead (valgrind's callgrind, one pass over
all resources minus a run that only loads them): the same count whatever else the
machine does, which is what to compare between two versions on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fhir_server import jsonio
from fhir_server.model.structure import check_structure, warm_up
from fhir_server.service.resources import ResourceService, stamp

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "synthea-10-patients"


def load(folder: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*.ndjson")):
        for line in path.read_bytes().splitlines():
            if line.strip():
                resource = jsonio.loads(line)
                out.append(stamp(resource, resource.get("id") or "x", 1, 0))
    return out


def _best(runs: int, fn: Callable[[Any], Any], items: list[dict[str, Any]]) -> float:
    """Best pass over ``items`` in CPU microseconds per item."""
    best = float("inf")
    for _ in range(runs):
        start = time.process_time()
        for item in items:
            fn(item)
        best = min(best, time.process_time() - start)
    return best / len(items) * 1e6


def _validators() -> dict[str, Callable[[Any], Any]]:
    # validate() needs no database: the service is built without one
    return {
        "structure": check_structure,
        "no model": ResourceService(None, r4b_model_check=False).validate,  # type: ignore[arg-type]
        "full": ResourceService(None, r4b_model_check=True).validate,  # type: ignore[arg-type]
    }


def timed(args: argparse.Namespace) -> None:
    resources = load(args.data)
    by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in resources:
        by_type[r["resourceType"]].append(r)
    warm_up()
    validators = _validators()
    for r in resources:  # every sample resource must pass, or the figures mean nothing
        validators["full"](r)
    print(f"{len(resources)} resources from {args.data}; best of {args.runs} passes, CPU µs per resource")
    print(f"{'type':<22}{'n':>6}" + "".join(f"{name:>11}" for name in validators))
    for name, items in [*sorted(by_type.items()), ("ALL", resources)]:
        cells = "".join(f"{_best(args.runs, fn, items):>11.1f}" for fn in validators.values())
        print(f"{name:<22}{len(items):>6}{cells}")


def _child(args: argparse.Namespace) -> None:
    """Under callgrind: load and warm up, then (unless ``--child load``) one pass of one validator."""
    resources = load(args.data)
    warm_up()
    fn = _validators()[args.validator]
    for r in resources[:50]:
        fn(r)  # first-use tables (the R4B model classes) are not per-resource cost
    if args.child == "validate":
        for r in resources:
            fn(r)


def _instructions(args: argparse.Namespace, mode: str, validator: str) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cg.out")
        cmd = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            sys.executable,
            "-m",
            "bench.validation_bench",
            "--data",
            str(args.data),
            "--child",
            mode,
            "--validator",
            validator,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[1])
        match = re.search(r"Collected : (\d+)", proc.stderr)
        if match is None:
            raise RuntimeError(proc.stderr[-2000:])
        return int(match.group(1))


def counted(args: argparse.Namespace) -> None:
    n = len(load(args.data))
    base = _instructions(args, "load", "structure")
    print(f"{n} resources from {args.data}; CPU instructions per resource (callgrind, one pass)")
    for validator in ("structure", "no model", "full"):
        total = _instructions(args, "validate", validator)
        print(f"{validator:<12}{(total - base) / n:>12,.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--instructions", action="store_true", help="count instructions with callgrind")
    parser.add_argument("--child", choices=["load", "validate"], help=argparse.SUPPRESS)
    parser.add_argument("--validator", default="full", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
    elif args.instructions:
        counted(args)
    else:
        timed(args)


if __name__ == "__main__":
    main()
