"""The master patient index service: candidates from the blocking-key index, scored.

Used by ``Patient/$match`` and the duplicate tools (docs/mpi.md). Scoring is the pure
``fhir_server.mpi`` core; this module only finds the candidates (``storage/mpi_queries.py``)
and ranks them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy.engine import Connection

from fhir_server.errors import FhirError
from fhir_server.mpi.blocking import probe_keys
from fhir_server.mpi.features import Features, extract
from fhir_server.mpi.scoring import CERTAIN, CERTAINLY_NOT, PROBABLE, Match, score_pair
from fhir_server.storage.db import Database
from fhir_server.storage.mpi_queries import Candidates, PairRow, candidates, list_pairs, mark_pair, reviewed, upsert_pairs
from fhir_server.timeutil import now_us

#: candidates read per blocking key; a key with more (a very common name born on one day, a
#: phone shared by a whole clinic) is cut at this many and the answer says so
PER_KEY_LIMIT = 200


@dataclass(frozen=True, slots=True)
class Scored:
    res_id: str
    body: bytes
    match: Match


@dataclass(frozen=True, slots=True)
class MatchOutcome:
    matches: list[Scored]
    #: blocking keys whose candidates were cut at the limit (reported, never silent)
    limited_keys: list[str]
    examined: int


class MpiService:
    def __init__(self, db: Database, per_key_limit: int = PER_KEY_LIMIT) -> None:
        self.db = db
        self.per_key_limit = per_key_limit

    @staticmethod
    def features(patient: dict[str, Any]) -> Features:
        """The features of a Patient to match; 400 when it has too little to match on."""
        if not isinstance(patient, dict) or patient.get("resourceType") != "Patient":
            raise FhirError.of(400, "invalid", "The resource to match must be a Patient")
        f = extract(patient)
        if not f.has_enough():
            raise FhirError.of(
                400,
                "required",
                "Too little to match on: give an identifier (NIK, nik-ibu, BPJS card, IHS number) or a name with a birth date",
                "Patient",
            )
        return f

    def match(
        self,
        patient: dict[str, Any],
        *,
        only_certain: bool = False,
        count: int | None = None,
        exclude_id: str | None = None,
        certainly_not: bool = False,
        conn: Connection | None = None,
    ) -> MatchOutcome:
        """Stored Patients that may be the person ``patient`` describes, best first.

        When ``patient`` is a stored record (its ``id``), the candidates a reviewer marked "not the
        same person" as it (``$not-duplicate``) are left out, or with ``certainly_not`` listed last
        with the grade ``certainly-not`` and score 0 (R4's match-grade value set)."""
        f = self.features(patient)
        if conn is None:
            with self.db.read() as c:
                found, rejected = self._candidates(c, f, patient.get("id"))
        else:
            found, rejected = self._candidates(conn, f, patient.get("id"))
        scored = []
        for row in found.rows:
            if row.res_id == exclude_id:
                continue
            m = score_pair(f, extract(orjson.loads(row.body)))
            if m.grade is None:
                continue
            if row.res_id in rejected:
                if certainly_not and not only_certain:
                    verdict = Match(0.0, CERTAINLY_NOT, ("a reviewer marked the two not the same person", *m.reasons), m.weight)
                    scored.append(Scored(row.res_id, row.body, verdict))
                continue
            if only_certain and m.grade != CERTAIN:
                continue
            scored.append(Scored(row.res_id, row.body, m))
        scored.sort(key=lambda s: (-s.match.score, s.res_id))
        if count is not None:
            scored = scored[:count]
        return MatchOutcome(scored, found.limited, len(found.rows))

    def _candidates(self, conn: Connection, f: Features, stored_id: Any) -> tuple[Candidates, set[str]]:
        """The candidates, and the ids a reviewer marked not the same person as ``stored_id``."""
        found = candidates(conn, probe_keys(f), self.per_key_limit)
        if not isinstance(stored_id, str) or not found.rows:
            return found, set()
        pairs = reviewed(conn, [stored_id], "not-duplicate")
        return found, {b if a == stored_id else a for a, b in pairs}

    # -- the review list -----------------------------------------------------------------------
    def duplicates(self, *, status: str, min_score: float, limit: int, offset: int, patient_id: str | None = None) -> list[PairRow]:
        """Recorded pairs (by the scan or by flagging on write), best first."""
        with self.db.read() as conn:
            return list_pairs(conn, status=status, min_score=min_score, limit=limit, offset=offset, patient_id=patient_id)

    def mark_in(self, conn: Connection, a_id: str, b_id: str, status: str, reviewer: str | None) -> None:
        """A reviewer's verdict on a pair, in the caller's write transaction."""
        mark_pair(conn, a_id, b_id, status, reviewer, now_us())

    # -- flagging on write (setting FHIR_MPI_FLAG_DUPLICATES) ---------------------------------------------
    def flag_in(self, conn: Connection, patient: dict[str, Any]) -> int:
        """Record the probable and certain matches of a Patient just written, in its transaction."""
        if not extract(patient).has_enough():
            return 0
        outcome = self.match(patient, exclude_id=patient.get("id"), conn=conn)
        found = [
            (str(patient["id"]), s.res_id, s.match.score, str(s.match.grade), list(s.match.reasons))
            for s in outcome.matches
            if s.match.grade in (CERTAIN, PROBABLE)
        ]
        upsert_pairs(conn, found, now_us())
        return len(found)

    def flagging(self, indexer: Callable[..., None]) -> Callable[..., None]:
        """``indexer`` that also flags duplicates of every Patient it indexes: every write path
        (REST, Bundles, the Dukcapil/BPJS imports, the CLI import) indexes through it."""

        def index_and_flag(conn: Connection, pk: int, resource: dict[str, Any] | None, **kw: Any) -> None:
            indexer(conn, pk, resource, **kw)
            if resource is not None and resource.get("resourceType") == "Patient":
                self.flag_in(conn, resource)

        return index_and_flag
