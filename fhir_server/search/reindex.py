"""Rebuild search-index rows for existing current resources (``fhir-server reindex``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import sqlalchemy as sa

from ..storage.search_index import replace_index
from ..storage.tables import resources
from .extract import extract_index

BATCH = 500

ProgressCallback = Callable[[int, int], None]


def reindex(
    engine_or_conn: sa.Engine | sa.Connection,
    res_type: str | None = None,
    progress_callback: ProgressCallback | None = None,
    *,
    batch_size: int = BATCH,
) -> int:
    """Re-extract index rows of every current (not deleted) resource, optionally of one type.

    Works in batches of ``batch_size`` ordered by pk, one transaction per batch
    when given an Engine (so a long reindex does not hold one huge transaction;
    writers in between are indexed by their own transaction anyway). Given a
    Connection, everything runs in the caller's transaction.
    ``progress_callback(done, total)`` is called after each batch. Returns the
    number of resources reindexed.
    """
    where = [resources.c.deleted == sa.false()]
    if res_type:
        where.append(resources.c.res_type == res_type)
    count_stmt = sa.select(sa.func.count()).select_from(resources).where(*where)
    if isinstance(engine_or_conn, sa.Engine):
        with engine_or_conn.connect() as conn:
            total = conn.execute(count_stmt).scalar_one()
    else:
        total = engine_or_conn.execute(count_stmt).scalar_one()
    done, last_pk = 0, None
    while True:
        stmt = sa.select(resources.c.pk, resources.c.body).where(*where).order_by(resources.c.pk).limit(batch_size)
        if last_pk is not None:
            stmt = stmt.where(resources.c.pk > last_pk)
        if isinstance(engine_or_conn, sa.Engine):
            with engine_or_conn.begin() as conn:
                n, last_pk = _batch(conn, stmt)
        else:
            n, last_pk = _batch(engine_or_conn, stmt)
        if n == 0:
            break
        done += n
        if progress_callback:
            progress_callback(done, max(total, done))
    return done


def _batch(conn: sa.Connection, stmt: sa.Select[Any]) -> tuple[int, int | None]:
    rows = conn.execute(stmt).all()
    for row in rows:
        if row.body is not None:
            replace_index(conn, row.pk, extract_index(orjson.loads(row.body)))
    return len(rows), (rows[-1].pk if rows else None)
