"""Micro-benchmark of write validation: the cost per resource of the checks a write runs.

Times ``ResourceService.validate`` (the R4 structure checker with the core-extension
checks, the fhir.resources R4B model, the SATUSEHAT administrativeCode walk) on the
Synthea sample (``shared/data/synthea-10-patients``, 7,160 resources, Apache-2.0), each
resource stamped as a write stamps it. Prints the best of ``--runs`` passes per resource
type and for all resources, in microseconds per resource, with and without the model check.

    python -m bench.validation_bench [--data DIR] [--runs 5]

The figures are CPU-bound and noisy on a shared machine: compare runs taken side by side.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
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


def _best(runs: int, fn: Any, items: list[dict[str, Any]]) -> float:
    """Best pass over ``items`` in microseconds per item."""
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        for item in items:
            fn(item)
        best = min(best, time.perf_counter() - start)
    return best / len(items) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    resources = load(args.data)
    by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in resources:
        by_type[r["resourceType"]].append(r)
    warm_up()
    # validate() needs no database: the service is built without one
    full = ResourceService(None, r4b_model_check=True).validate  # type: ignore[arg-type]
    lean = ResourceService(None, r4b_model_check=False).validate  # type: ignore[arg-type]
    for r in resources:  # every sample resource must pass, or the figures mean nothing
        full(r)
    print(f"{len(resources)} resources from {args.data}; best of {args.runs} passes, µs per resource")
    print(f"{'type':<22}{'n':>6}{'structure':>11}{'no model':>10}{'full':>9}")
    rows = [*sorted(by_type.items()), ("ALL", resources)]
    for name, items in rows:
        s = _best(args.runs, check_structure, items)
        lean_us = _best(args.runs, lean, items)
        full_us = _best(args.runs, full, items)
        print(f"{name:<22}{len(items):>6}{s:>11.1f}{lean_us:>10.1f}{full_us:>9.1f}")


if __name__ == "__main__":
    main()
