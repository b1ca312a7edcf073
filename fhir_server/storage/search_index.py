"""Writing search-index rows: called by the repository inside the write transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from . import deferred
from .index_tables import INDEX_TABLES
from .placeholders import driver_cursor, positional

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
    #: MPI blocking keys (Patients only)
    mpi: list[Row] = field(default_factory=list)

    def by_kind(self) -> dict[str, list[Row]]:
        return {k: getattr(self, k) for k in INDEX_TABLES}

    def count(self) -> int:
        return sum(len(v) for v in self.by_kind().values())


# Index rows are the bulk of every write: they go straight to the DBAPI cursor
# (plain SQL built once, executemany with tuples) inside the same transaction,
# skipping SQLAlchemy's per-statement machinery, which cost several times more.
_COLUMNS = {k: [c.name for c in t.columns if c.name != "resource_pk"] for k, t in INDEX_TABLES.items()}


_INSERT_SQL = {
    k: f"INSERT INTO {t.name} (resource_pk, {', '.join(_COLUMNS[k])}) VALUES (?{', ?' * len(_COLUMNS[k])})" for k, t in INDEX_TABLES.items()
}
_DEFERRED_COLUMNS = {k: ("resource_pk", *cols) for k, cols in _COLUMNS.items()}
#: per kind: its table's name and columns as the deferred rows are keyed, and the row keys in column order
_KINDS = tuple((k, (t.name, _DEFERRED_COLUMNS[k]), _COLUMNS[k]) for k, t in INDEX_TABLES.items())
_DELETE_SQL = {k: f"DELETE FROM {t.name} WHERE resource_pk = ?" for k, t in INDEX_TABLES.items()}


def delete_index(conn: sa.Connection, resource_pk: int) -> None:
    """Remove every index row of ``resource_pk`` (on delete; ON DELETE CASCADE covers row removal)."""
    deferred.flush(conn)  # rows of this resource may still be pending
    dialect = conn.dialect.name
    with driver_cursor(conn) as cur:
        for template in _DELETE_SQL.values():
            cur.execute(positional(template, dialect), (resource_pk,))


def replace_index(conn: sa.Connection, resource_pk: int, rows: IndexRows, *, fresh: bool = False) -> None:
    """Replace the index rows of ``resource_pk`` with ``rows``.

    ``fresh=True`` skips the deletes (a just-inserted resource has no rows yet).
    """
    if not fresh:
        delete_index(conn, resource_pk)
    dialect = conn.dialect.name
    # every write passes here: no per-call dicts or look-ups
    tables = [
        (kind, target, [(resource_pk, *map(r.get, cols)) for r in items]) for kind, target, cols in _KINDS if (items := getattr(rows, kind))
    ]
    batch = deferred.pending(conn)
    if batch is not None:  # written with the transaction's other index rows (storage/deferred.py)
        for _, target, values in tables:
            batch.add(*target, values)
        return
    with driver_cursor(conn) as cur:
        for kind, _, values in tables:
            cur.executemany(positional(_INSERT_SQL[kind], dialect), values)
