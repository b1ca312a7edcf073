"""The targets of issues 2 (item 10), 3 (item 7) and 8 (item 4), checked against measured results."""

from __future__ import annotations

from dataclasses import dataclass

from bench.load import Result

READ, CREATE = "read by id", "create Patient"
IDENT, FAMILY, BIRTH, ENC = "search identifier", "search family", "search birthdate", "search Encounter?patient="
#: searches in a compartment (search/compartment.py): our server only (the peer has no such route)
COMPARTMENT, COMPARTMENT_ALL = "search Patient/[id]/Encounter", "search Patient/[id]/*"
#: ``Patient/[id]/$everything`` and a ``phonetic`` search (search/phonetic.py): our server only
EVERYTHING, PHONETIC = "Patient/[id]/$everything", "search phonetic"
#: two criteria AND-ed (the Patient's family name and gender): our server only
FAMILY_GENDER = "search family&gender"
INGEST, MIXED = "transaction ingest", "mixed 70/20/10"
#: the searches every server under test answers (the mixed scenario draws from these)
SHARED_SEARCHES = [IDENT, FAMILY, BIRTH, ENC]
SEARCHES = [*SHARED_SEARCHES, FAMILY_GENDER, COMPARTMENT, COMPARTMENT_ALL, EVERYTHING, PHONETIC]

#: scenario -> minimum ratio ours/peer (on the scenario's throughput: req/s, or resources/s for ingest)
PEER_RATIO = {READ: 4.0, CREATE: 3.0, IDENT: 4.0, FAMILY: 20.0, INGEST: 2.5}
#: scenario -> (absolute minimum throughput, unit, condition text)
ABSOLUTE = {CREATE: (1000.0, "req/s", "SQLite, 2 workers"), INGEST: (1500.0, "resources/s", "")}
TRIVIAL_RATIO = {READ: 0.60}
P95_MS = 20.0  # search p95 at 100k Patients (issue 3 item 7, issue 8 item 4)
P95_AT = 100_000
P50_GROWTH = 1.5  # search p50 and p95 at 1M <= 1.5x the 10k figures (issue 20)


@dataclass
class Check:
    what: str
    figure: str
    target: str
    met: bool | None  # None: not measurable in this run

    @property
    def mark(self) -> str:
        return {True: "[green]met[/]", False: "[red]NOT met[/]", None: "[dim]n/a[/]"}[self.met]


def throughput(r: Result) -> float:
    return r.resources_per_s if r.per_request > 1 else r.rps


def _unit(scenario: str) -> str:
    return "resources/s" if scenario == INGEST else "req/s"


def is_ours(r: Result) -> bool:
    return r.target.startswith("ours")


def run_checks(results: list[Result], patients: int, workers: int) -> list[Check]:
    checks: list[Check] = []
    peer = {r.scenario: r for r in results if r.target.startswith("sekmet")}
    trivial = next((r for r in results if r.target == "trivial FastAPI"), None)
    for r in (x for x in results if is_ours(x)):
        label = f"{r.scenario} [{r.target}]"
        if r.scenario in PEER_RATIO:
            want = PEER_RATIO[r.scenario]
            p = peer.get(r.scenario)
            if p and throughput(p) > 0:
                ratio = throughput(r) / throughput(p)
                checks.append(
                    Check(
                        label,
                        f"{ratio:.2f}x peer ({throughput(r):,.0f} vs {throughput(p):,.0f} {_unit(r.scenario)})",
                        f">= {want:g}x peer",
                        ratio >= want,
                    )
                )
            else:
                checks.append(Check(label, "peer not measured", f">= {want:g}x peer", None))
        if r.scenario in TRIVIAL_RATIO and trivial:
            want = TRIVIAL_RATIO[r.scenario]
            ratio = r.rps / trivial.rps if trivial.rps else 0.0
            checks.append(
                Check(
                    label,
                    f"{ratio:.0%} of trivial ({r.rps:,.0f} vs {trivial.rps:,.0f} req/s)",
                    f">= {want:.0%} of trivial FastAPI",
                    ratio >= want,
                )
            )
        if r.scenario in ABSOLUTE:
            floor, unit, cond = ABSOLUTE[r.scenario]
            applies = not cond or ("sqlite" in r.target and workers == 2)
            checks.append(
                Check(
                    label,
                    f"{throughput(r):,.0f} {unit}",
                    f">= {floor:,.0f} {unit}" + (f" ({cond})" if cond else ""),
                    (throughput(r) >= floor) if applies else None,
                )
            )
        if r.scenario in SEARCHES:
            ok = r.p95_ms < P95_MS if patients >= P95_AT else None
            checks.append(
                Check(label, f"p95 {r.p95_ms:.1f} ms at {patients:,} Patients", f"p95 < {P95_MS:g} ms at {P95_AT:,} Patients", ok)
            )
        if r.errors:
            checks.append(Check(label, f"{r.errors} errors {r.statuses}", "no errors", False))
    return checks


def scale_checks(rows: list[tuple[int, Result]]) -> list[Check]:
    """rows: (size, result) for each size and search scenario (one database)."""
    checks: list[Check] = []
    by = {(size, r.scenario, r.target): r for size, r in rows}
    sizes = sorted({s for s, _ in rows})
    targets = sorted({r.target for _, r in rows})
    for target in targets:
        for sc in SEARCHES:
            at = [s for s in sizes if s >= P95_AT and (s, sc, target) in by]
            if at:
                r = by[(at[0], sc, target)]
                checks.append(
                    Check(
                        f"{sc} [{target}]", f"p95 {r.p95_ms:.1f} ms at {at[0]:,}", f"p95 < {P95_MS:g} ms at {P95_AT:,}", r.p95_ms < P95_MS
                    )
                )
            small = [s for s in sizes if (s, sc, target) in by]
            if len(small) >= 2:
                lo, hi = small[0], small[-1]
                a, b = by[(lo, sc, target)], by[(hi, sc, target)]
                applies = lo <= 10_000 and hi >= 1_000_000
                for name, small_ms, big_ms in (("p50", a.p50_ms, b.p50_ms), ("p95", a.p95_ms, b.p95_ms)):
                    growth = big_ms / small_ms if small_ms else 0.0
                    checks.append(
                        Check(
                            f"{sc} [{target}]",
                            f"{name} {small_ms:.2f} ms at {lo:,} -> {big_ms:.2f} ms at {hi:,} ({growth:.2f}x)",
                            f"{name} at 1M <= {P50_GROWTH:g}x {name} at 10k",
                            (growth <= P50_GROWTH) if applies else None,
                        )
                    )
    return checks
