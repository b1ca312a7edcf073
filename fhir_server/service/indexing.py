"""Keeping the search index in step with writes, inside the write's transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection

from fhir_server.search.extract import extract_index
from fhir_server.storage.search_index import IndexRows, delete_index, replace_index


def index_resource(
    conn: Connection, pk: int, resource: dict[str, Any] | None, *, fresh: bool = False, rows: IndexRows | None = None
) -> None:
    """Replace the index rows of resource ``pk`` (none when it was deleted).

    ``fresh``: the resource was just inserted, so there are no old rows to delete.
    ``rows``: already extracted from ``resource`` (by ``index_rows``, before the transaction).
    """
    if resource is None:
        delete_index(conn, pk)
    else:
        replace_index(conn, pk, rows if rows is not None else extract_index(resource), fresh=fresh)


def index_rows(resource: dict[str, Any], holders: list[dict[str, Any]] | None = None) -> IndexRows:
    """The index rows of ``resource``, extracted ahead of its write (pure: no database);
    ``holders``: its reference holders when already walked (``extract_index``)."""
    return extract_index(resource, holders)
