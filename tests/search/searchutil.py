"""Shortcuts for search tests."""

from __future__ import annotations

from urllib.parse import parse_qsl

import sqlalchemy as sa

from fhir_server.search.engine import SearchResult, run_search


def search(store, res_type: str | None, query: str, *, strict: bool = False, count: int = 100, max_count: int = 1000) -> SearchResult:
    params = parse_qsl(query, keep_blank_values=True)
    with store.engine.connect() as conn:
        return run_search(conn, res_type, params, strict=strict, default_count=count, max_count=max_count)


def ids(store, res_type: str | None, query: str, **kw) -> list[str]:
    """Ids of all matches (walking every page)."""
    res = search(store, res_type, query, **kw)
    return [i for _, i, _ in res.matches]


def idset(store, res_type: str | None, query: str, **kw) -> set[str]:
    return set(ids(store, res_type, query, **kw))


def sqlite_plan(store, res_type: str, query: str, table: str) -> list[str]:
    """SQLite's ``EXPLAIN QUERY PLAN`` steps of the first statement a search runs on ``table``."""
    statements: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        statements.append((statement, parameters))

    sa.event.listen(store.engine, "before_cursor_execute", capture)
    try:
        search(store, res_type, query, strict=True, count=50, max_count=50)
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", capture)
    statement, parameters = next((s, p) for s, p in statements if table in s)
    with store.engine.connect() as conn:
        return [row[3] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)]
