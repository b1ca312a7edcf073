"""Master patient index queries: candidates by blocking key (``idx_mpi``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from fhir_server.storage import upsert
from fhir_server.storage.index_tables import idx_mpi, idx_reference
from fhir_server.storage.mpi_tables import mpi_pairs, mpi_scan
from fhir_server.storage.tables import resources


@dataclass(frozen=True, slots=True)
class Candidate:
    pk: int
    res_id: str
    body: bytes


@dataclass(frozen=True, slots=True)
class Candidates:
    rows: list[Candidate]
    #: keys whose block held more than the per-key limit (those blocks were cut)
    limited: list[str]


def candidate_pks(conn: Connection, keys: list[str], per_key: int) -> tuple[set[int], list[str]]:
    """Resource keys of Patients sharing a blocking key, at most ``per_key`` per key, in one
    statement (each key a separate limited index range scan), and the keys that hit the limit."""
    if not keys:
        return set(), []
    branches = [
        sa.select(idx_mpi.c.key, idx_mpi.c.resource_pk).where(idx_mpi.c.key == key).order_by(idx_mpi.c.resource_pk).limit(per_key + 1)
        for key in keys
    ]
    union = sa.union_all(*(b.subquery().select() for b in branches))
    counts: dict[str, int] = {}
    pks: set[int] = set()
    for key, pk in conn.execute(union):
        n = counts.get(key, 0) + 1
        counts[key] = n
        if n <= per_key:
            pks.add(pk)
    return pks, [k for k, n in counts.items() if n > per_key]


def load_patients(conn: Connection, pks: set[int]) -> list[Candidate]:
    """The current (not deleted) Patients among ``pks``."""
    if not pks:
        return []
    r = resources
    stmt = sa.select(r.c.pk, r.c.res_id, r.c.body).where(r.c.pk.in_(sorted(pks)), r.c.res_type == "Patient", r.c.deleted == sa.false())
    return [Candidate(pk, res_id, bytes(body)) for pk, res_id, body in conn.execute(stmt) if body is not None]


def candidates(conn: Connection, keys: list[str], per_key: int) -> Candidates:
    pks, limited = candidate_pks(conn, keys, per_key)
    return Candidates(load_patients(conn, pks), limited)


def referring(
    conn: Connection, res_type: str, res_id: str, *, urls: Sequence[str] = (), url_params: Sequence[str] = ()
) -> list[tuple[str, str]]:
    """(type, id) of every current resource with a reference to ``res_type/res_id`` (from the
    reference index, where every reference search parameter of every type is indexed).

    Relative references are indexed by type and id; an absolute one (under this server's base)
    only by its URL: ``urls`` are those forms, looked up under the reference parameters
    ``url_params`` (so the ``(param, url)`` index serves the lookup)."""
    r, ref = resources, idx_reference
    where_local = sa.and_(ref.c.target_type == res_type, ref.c.target_id == res_id)
    where = (
        sa.or_(where_local, sa.and_(ref.c.param.in_(sorted(url_params)), ref.c.url.in_(list(urls)))) if urls and url_params else where_local
    )
    stmt = (
        sa.select(r.c.res_type, r.c.res_id)
        .distinct()
        .select_from(ref.join(r, r.c.pk == ref.c.resource_pk))
        .where(where, r.c.deleted == sa.false())
        .order_by(r.c.res_type, r.c.res_id)
    )
    return [(t, i) for t, i in conn.execute(stmt)]


# --- the review tables -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PairRow:
    a_id: str
    b_id: str
    score: float
    grade: str
    reasons: list[str]
    status: str
    found_us: int
    reviewed_by: str | None


def ordered(x: str, y: str) -> tuple[str, str]:
    return (x, y) if x < y else (y, x)


def upsert_pairs(conn: Connection, pairs: list[tuple[str, str, float, str, list[str]]], found_us: int) -> int:
    """Record pairs found alike (ids in any order); a reviewed pair keeps its verdict, an open one
    gets the new score. Returns how many rows were new or open."""
    if not pairs:
        return 0
    t = mpi_pairs
    rows = {}
    for x, y, score, grade, reasons in pairs:
        a, b = ordered(x, y)
        rows[(a, b)] = {
            "a_id": a,
            "b_id": b,
            "score": score,
            "grade": grade,
            "reasons": orjson.dumps(reasons).decode(),
            "found_us": found_us,
        }
    insert = upsert.insert(conn.dialect.name, t)
    stmt = insert.on_conflict_do_update(
        index_elements=["a_id", "b_id"],
        set_={
            "score": insert.excluded.score,
            "grade": insert.excluded.grade,
            "reasons": insert.excluded.reasons,
            "found_us": insert.excluded.found_us,
        },
        where=t.c.status == "open",
    )
    return conn.execute(stmt, list(rows.values())).rowcount or 0


def list_pairs(conn: Connection, *, status: str, min_score: float, limit: int, offset: int, patient_id: str | None = None) -> list[PairRow]:
    t = mpi_pairs
    where = [t.c.status == status, t.c.score >= min_score]
    if patient_id is not None:
        where.append(sa.or_(t.c.a_id == patient_id, t.c.b_id == patient_id))
    stmt = sa.select(t).where(*where).order_by(t.c.score.desc(), t.c.id).limit(limit).offset(offset)
    return [
        PairRow(r.a_id, r.b_id, r.score, r.grade, orjson.loads(r.reasons), r.status, r.found_us, r.reviewed_by) for r in conn.execute(stmt)
    ]


def mark_pair(
    conn: Connection, x: str, y: str, status: str, reviewer: str | None, now: int, *, score: float = 0.0, reasons: str = "[]"
) -> None:
    """Record a reviewer's verdict on a pair (inserting it when the scan never found it)."""
    a, b = ordered(x, y)
    t = mpi_pairs
    insert = upsert.insert(conn.dialect.name, t)
    values = {"a_id": a, "b_id": b, "score": score, "grade": "possible", "reasons": reasons, "found_us": now}
    stmt = insert.values(**values, status=status, reviewed_by=reviewer, reviewed_us=now).on_conflict_do_update(
        index_elements=["a_id", "b_id"], set_={"status": status, "reviewed_by": reviewer, "reviewed_us": now}
    )
    conn.execute(stmt)


def reviewed(conn: Connection, ids: list[str], status: str) -> set[tuple[str, str]]:
    """Pairs among ``ids`` (either side) with verdict ``status``."""
    if not ids:
        return set()
    t = mpi_pairs
    stmt = sa.select(t.c.a_id, t.c.b_id).where(t.c.status == status, sa.or_(t.c.a_id.in_(ids), t.c.b_id.in_(ids)))
    return {(a, b) for a, b in conn.execute(stmt)}


def scan_state(conn: Connection, name: str) -> tuple[int, int, bool] | None:
    """(last_pk, done, finished) of scan ``name``, or None when it never ran."""
    row = conn.execute(sa.select(mpi_scan.c.last_pk, mpi_scan.c.done, mpi_scan.c.finished).where(mpi_scan.c.name == name)).first()
    return (row[0], row[1], bool(row[2])) if row else None


def save_scan_state(conn: Connection, name: str, last_pk: int, done: int, now: int, *, finished: bool = False) -> None:
    t = mpi_scan
    insert = upsert.insert(conn.dialect.name, t)
    conn.execute(
        insert.values(name=name, last_pk=last_pk, done=done, started_us=now, updated_us=now, finished=finished).on_conflict_do_update(
            index_elements=["name"], set_={"last_pk": last_pk, "done": done, "updated_us": now, "finished": finished}
        )
    )


def reset_scan(conn: Connection, name: str) -> None:
    conn.execute(sa.delete(mpi_scan).where(mpi_scan.c.name == name))


def patient_batch(conn: Connection, after_pk: int, limit: int) -> list[Candidate]:
    """The next ``limit`` current Patients after row key ``after_pk``, by row key."""
    r = resources
    stmt = (
        sa.select(r.c.pk, r.c.res_id, r.c.body)
        .where(r.c.res_type == "Patient", r.c.deleted == sa.false(), r.c.pk > after_pk)
        .order_by(r.c.pk)
        .limit(limit)
    )
    return [Candidate(pk, res_id, bytes(body)) for pk, res_id, body in conn.execute(stmt) if body is not None]


def count_patients(conn: Connection) -> int:
    r = resources
    return int(
        conn.execute(sa.select(sa.func.count()).select_from(r).where(r.c.res_type == "Patient", r.c.deleted == sa.false())).scalar_one()
    )


def keys_of(conn: Connection, keys: list[str]) -> list[tuple[str, int]]:
    """Every (key, resource_pk) row of the given blocking keys."""
    if not keys:
        return []
    out: list[tuple[str, int]] = []
    for start in range(0, len(keys), 500):  # SQLite's bound-parameter limit, PostgreSQL's plan size
        chunk = keys[start : start + 500]
        out.extend((k, pk) for k, pk in conn.execute(sa.select(idx_mpi.c.key, idx_mpi.c.resource_pk).where(idx_mpi.c.key.in_(chunk))))
    return out
