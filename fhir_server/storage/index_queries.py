"""Index queries of operations: the meta in use (``$meta``)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from fhir_server.storage.index_tables import idx_token, idx_uri
from fhir_server.storage.tables import resources

#: the distinct profiles in use, in order, one descent of ``ix_idx_uri_param_value`` each (a loose
#: index scan): every Synthea resource names a profile, so ``SELECT DISTINCT`` read one index row per
#: resource (1,000,000 at 1M Patients) for a handful of values. Index rows exist only for current,
#: not deleted resources (service/indexing.py), so no join to ``resources`` is needed.
_DISTINCT_PROFILES_SQL = """
WITH RECURSIVE found(value) AS (
    SELECT (SELECT u.value FROM idx_uri u WHERE u.param = '_profile' ORDER BY u.value LIMIT 1)
    UNION ALL
    SELECT (SELECT u.value FROM idx_uri u WHERE u.param = '_profile' AND u.value > found.value ORDER BY u.value LIMIT 1)
    FROM found WHERE found.value IS NOT NULL
)
SELECT value FROM found WHERE value IS NOT NULL ORDER BY value
"""


def meta_summary(conn: Connection, res_type: str | None) -> dict[str, list[Any]]:
    """The distinct profiles, tags and security labels in use (``$meta``), of one type or all."""
    r = resources
    type_filter = [r.c.res_type == res_type] if res_type else []
    out: dict[str, list[Any]] = {}
    if res_type is None:
        profiles = [row[0] for row in conn.exec_driver_sql(_DISTINCT_PROFILES_SQL)]
    else:
        profiles = list(
            conn.execute(
                sa.select(idx_uri.c.value)
                .distinct()
                .join(r, r.c.pk == idx_uri.c.resource_pk)
                .where(idx_uri.c.param == "_profile", r.c.deleted == sa.false(), *type_filter)
                .order_by(idx_uri.c.value)
            ).scalars()
        )
    if profiles:
        out["profile"] = list(profiles)
    for key, param in (("tag", "_tag"), ("security", "_security")):
        rows = conn.execute(
            sa.select(idx_token.c.system, idx_token.c.code)
            .distinct()
            .join(r, r.c.pk == idx_token.c.resource_pk)
            .where(idx_token.c.param == param, r.c.deleted == sa.false(), *type_filter)
            .order_by(idx_token.c.system, idx_token.c.code)
        ).all()
        if rows:
            out[key] = [{k: v for k, v in (("system", s), ("code", c)) if v is not None} for s, c in rows]
    return out
