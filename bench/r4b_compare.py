"""Evidence for the FHIR_R4B_MODEL_CHECK decision (not a test): does the fhir.resources
R4B model ever reject a resource the R4 structure checker accepts?

Mutates the benchmark's resources (visit Bundle: Patient, Coverage, Encounter, Condition,
Observation; plus the search samples) one change at a time: wrong JSON types, empty or
padded strings, bad dates, nulls, empty arrays/objects, removed elements, unknown or
primitive-extension siblings, number edge cases. Among the mutants the structure checker
accepts, it counts those the R4B model rejects and prints the most common reasons.

    python -m bench.r4b_compare [--mutants 20000] [--seed 1]
"""

from __future__ import annotations

import argparse
import collections
import copy
import random
from typing import Any

from bench import data
from fhir_server.model.structure import check_structure
from fhir_server.model.validate import model_issues
from fhir_server.service.resources import stamp

_VALUES: list[Any] = [
    "",
    " ",
    "x",
    " x",
    "2020-13-01",
    "2020-02-30",
    "2020-01-01T25:00:00Z",
    "2020-01-01T10:00:00",
    0,
    -1,
    1.5,
    True,
    None,
    [],
    {},
    [None],
    ["a"],
    {"a": 1},
    "abc\x00",
    10**20,
    "1e5",
    "http://x y",
    {"extension": []},
    {"value": "1"},
    {"coding": []},
    {"reference": ""},
]


def _seeds() -> list[dict[str, Any]]:
    from tests.search.searchsamples import COVERAGE, ENCOUNTER, PATIENT

    out = [stamp(e["resource"], "x1", 1, 1_700_000_000_000_000) for e in data.visit_bundle(3)["entry"]][:8]
    for r in out:
        for key in ("subject", "beneficiary", "encounter", "patient"):
            if isinstance(r.get(key), dict):
                r[key] = {"reference": "Patient/abc"}
    return [*out, PATIENT, ENCOUNTER, COVERAGE]


def _paths(node: Any, prefix: tuple = ()) -> Any:
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for k, v in items:
        yield (*prefix, k)
        yield from _paths(v, (*prefix, k))


def _variant(rng: random.Random, old: Any) -> Any:
    if isinstance(old, str):
        return rng.choice(
            [
                old + " ",
                " " + old,
                old + "\n",
                old * 50,
                old[:-1],
                old.upper(),
                old + "Z",
                old.replace("-", ""),
                "0" + old,
                old + ".5",
                "\t",
                old[:4],
                old[:7],
                old + ":00",
                old + "+07:00",
                old + "T10:00:00",
                "9999-12-31",
                "0000",
            ]
        )
    if isinstance(old, bool):
        return rng.choice(["true", 1, 0])
    if isinstance(old, (int, float)):
        return rng.choice([old * 1.5, -old, 2**31, 2**40, 0.1, str(old), 1e300])
    if isinstance(old, list):
        return old + old if old else [{}]
    if isinstance(old, dict):
        return {**old, rng.choice(list(old) or ["x"]): rng.choice(_VALUES)}
    return None


def mutate(rng: random.Random, resource: dict[str, Any]) -> dict[str, Any]:
    r = copy.deepcopy(resource)
    path = rng.choice([p for p in _paths(r) if p[0] != "resourceType"])
    parent: Any = r
    for step in path[:-1]:
        parent = parent[step]
    key = path[-1]
    roll = rng.random()
    if roll < 0.15 and isinstance(key, str):
        parent[rng.choice(["_" + key, key + "X", "valueString", "id", "extension", "modifierExtension"])] = rng.choice(_VALUES)
    elif roll < 0.3:
        parent.pop(key)
    elif roll < 0.65:
        parent[key] = _variant(rng, parent[key])
    else:
        parent[key] = rng.choice(_VALUES)
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mutants", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    seeds = _seeds()
    accepted = 0
    reasons: collections.Counter = collections.Counter()
    for _ in range(args.mutants):
        r = mutate(rng, rng.choice(seeds))
        if any(i.severity in ("error", "fatal") for i in check_structure(r)):
            continue
        accepted += 1
        issues = model_issues(r)
        if issues:
            reasons[(r["resourceType"], issues[0].expression, (issues[0].diagnostics or "")[:80])] += 1
    print(
        f"{args.mutants} mutants, {accepted} accepted by the structure checker, {sum(reasons.values())} of those rejected by the R4B model"
    )
    for reason, n in reasons.most_common(20):
        print(f"  {n:5}  {reason}")


if __name__ == "__main__":
    main()
