"""The duplicate scan: every stored Patient against its blocking-key candidates, pairs recorded
for review (``mpi_pairs``), resumable from a checkpoint (``fhir-server mpi scan``, docs/mpi.md).

Patients are taken in row-key order, in batches; each pair is scored once (by the Patient with the
lower row key: blocking keys are symmetric, mother <-> newborn included). A batch's pairs and the
checkpoint are committed together, so a scan stopped at any point resumes where it stopped and
never records a pair twice. Pairs a reviewer marked "not the same person" are skipped.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
from sqlalchemy.engine import Connection

from fhir_server.mpi.blocking import probe_keys
from fhir_server.mpi.features import Features, extract
from fhir_server.mpi.scoring import GRADES, score_pair
from fhir_server.storage.db import Database
from fhir_server.storage.mpi_queries import (
    Candidate,
    count_patients,
    keys_of,
    load_patients,
    ordered,
    patient_batch,
    reset_scan,
    reviewed,
    save_scan_state,
    scan_state,
    upsert_pairs,
)
from fhir_server.timeutil import now_us

SCAN = "scan"


@dataclass(frozen=True, slots=True)
class FoundPair:
    a_id: str
    b_id: str
    score: float
    grade: str
    reasons: tuple[str, ...]


@dataclass
class ScanSummary:
    scanned: int = 0
    total: int = 0
    pairs: int = 0
    compared: int = 0
    #: blocking keys skipped because more Patients share them than the limit (e.g. a clinic's phone)
    limited_keys: set[str] = field(default_factory=set)
    resumed_from: int = 0


class _FeatureCache:
    """Features by row key, the most recent ``size`` kept (neighbouring batches share candidates)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.items: OrderedDict[int, tuple[str, Features]] = OrderedDict()

    def get(self, pk: int) -> tuple[str, Features] | None:
        hit = self.items.get(pk)
        if hit is not None:
            self.items.move_to_end(pk)
        return hit

    def put(self, pk: int, res_id: str, body: bytes) -> tuple[str, Features]:
        value = (res_id, extract(orjson.loads(body)))
        self.items[pk] = value
        if len(self.items) > self.size:
            self.items.popitem(last=False)
        return value


class DuplicateScan:
    def __init__(self, db: Database, *, per_key_limit: int = 200, batch_size: int = 1000, min_grade: str = "possible") -> None:
        self.db = db
        self.per_key_limit = per_key_limit
        self.batch_size = batch_size
        self.grades = set(GRADES[: GRADES.index(min_grade) + 1])
        self.cache = _FeatureCache(50_000)

    def run(
        self,
        *,
        restart: bool = False,
        progress: Callable[[int, int], None] | None = None,
        sink: Callable[[FoundPair], None] | None = None,
    ) -> ScanSummary:
        """Scan from the checkpoint (or from the start with ``restart`` or after a finished scan)."""
        summary = ScanSummary()
        with self.db.write() as conn:
            if restart:
                reset_scan(conn, SCAN)
            state = scan_state(conn, SCAN)
        last_pk, done = (state[0], state[1]) if state and not state[2] else (0, 0)
        summary.resumed_from = done
        with self.db.read() as conn:
            summary.total = count_patients(conn)
        summary.scanned = done
        while True:
            with self.db.read() as conn:
                batch = patient_batch(conn, last_pk, self.batch_size)
                if not batch:
                    break
                found = self._score_batch(conn, batch, summary)
            now = now_us()
            with self.db.write() as conn:
                upsert_pairs(conn, [(p.a_id, p.b_id, p.score, p.grade, list(p.reasons)) for p in found], now)
                last_pk = batch[-1].pk
                summary.scanned += len(batch)
                save_scan_state(conn, SCAN, last_pk, summary.scanned, now)
            summary.pairs += len(found)
            if sink is not None:
                for pair in found:
                    sink(pair)
            if progress is not None:
                progress(summary.scanned, max(summary.total, summary.scanned))
        with self.db.write() as conn:
            save_scan_state(conn, SCAN, last_pk, summary.scanned, now_us(), finished=True)
        return summary

    def _score_batch(self, conn: Connection, batch: list[Candidate], summary: ScanSummary) -> list[FoundPair]:
        mine: dict[int, tuple[str, Features]] = {row.pk: self.cache.put(row.pk, row.res_id, row.body) for row in batch}
        probes = {pk: probe_keys(f) for pk, (_, f) in mine.items()}
        blocks: dict[str, list[int]] = {}
        for key, pk in keys_of(conn, sorted({k for keys in probes.values() for k in keys})):
            blocks.setdefault(key, []).append(pk)
        wanted: set[int] = set()
        pairs: set[tuple[int, int]] = set()
        for pk, keys in probes.items():
            for key in keys:
                block = blocks.get(key, ())
                if len(block) > self.per_key_limit:
                    summary.limited_keys.add(key)
                    continue
                for other in block:
                    if other > pk:
                        pairs.add((pk, other))
                        wanted.add(other)
        missing = {pk for pk in wanted if pk not in mine and self.cache.get(pk) is None}
        for row in load_patients(conn, missing):
            self.cache.put(row.pk, row.res_id, row.body)
        ids = [mine[pk][0] for pk in mine]
        rejected = reviewed(conn, ids, "not-duplicate")
        found = []
        for pk, other in sorted(pairs):
            theirs = mine.get(other) or self.cache.get(other)
            if theirs is None:  # deleted meanwhile
                continue
            (id_a, fa), (id_b, fb) = mine[pk], theirs
            if ordered(id_a, id_b) in rejected:
                continue
            summary.compared += 1
            m = score_pair(fa, fb)
            if m.grade in self.grades:
                a, b = ordered(id_a, id_b)
                found.append(FoundPair(a, b, m.score, m.grade, m.reasons))
        return found
