"""Master patient index queries: candidates by blocking key (``idx_mpi``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from fhir_server.storage.index_tables import idx_mpi, idx_reference
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
