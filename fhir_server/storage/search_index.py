"""Writing search-index rows: called by the repository inside the write transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from .index_tables import INDEX_TABLES

Row = dict[str, Any]


@dataclass
class IndexRows:
    """Index rows of one resource, per index table kind, without ``resource_pk``."""

    token: list[Row] = field(default_factory=list)
    string: list[Row] = field(default_factory=list)
    date: list[Row] = field(default_factory=list)
    reference: list[Row] = field(default_factory=list)
    number: list[Row] = field(default_factory=list)
    quantity: list[Row] = field(default_factory=list)
    uri: list[Row] = field(default_factory=list)
    composite: list[Row] = field(default_factory=list)

    def by_kind(self) -> dict[str, list[Row]]:
        return {k: getattr(self, k) for k in INDEX_TABLES}

    def count(self) -> int:
        return sum(len(v) for v in self.by_kind().values())


# Statements are built once; executemany binds the row dicts (same keys per table).
_DELETE = {k: t.delete().where(t.c.resource_pk == sa.bindparam("pk")) for k, t in INDEX_TABLES.items()}
_INSERT = {k: t.insert() for k, t in INDEX_TABLES.items()}
_COLUMNS = {k: [c.name for c in t.columns if c.name != "resource_pk"] for k, t in INDEX_TABLES.items()}


def delete_index(conn: sa.Connection, resource_pk: int) -> None:
    """Remove every index row of ``resource_pk`` (on delete; ON DELETE CASCADE covers row removal)."""
    for stmt in _DELETE.values():
        conn.execute(stmt, {"pk": resource_pk})


def replace_index(conn: sa.Connection, resource_pk: int, rows: IndexRows, *, fresh: bool = False) -> None:
    """Replace the index rows of ``resource_pk`` with ``rows``.

    ``fresh=True`` skips the deletes (a just-inserted resource has no rows yet).
    """
    if not fresh:
        delete_index(conn, resource_pk)
    for kind, items in rows.by_kind().items():
        if not items:
            continue
        cols = _COLUMNS[kind]
        params = [{c: r.get(c) for c in cols} | {"resource_pk": resource_pk} for r in items]
        conn.execute(_INSERT[kind], params)
