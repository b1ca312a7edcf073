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


def planned_search(client, params: list[tuple[str, str]]) -> tuple[list[str], list[dict]]:
    """PostgreSQL: the ids a Patient search finds, and the ``EXPLAIN ANALYZE`` plan of each statement
    it ran, run again with the planner steered off sequential scans, hashes and bitmaps
    (``SET LOCAL``): what the indexes *can* serve, whatever a small table's costs say."""
    seen: list[tuple[str, dict]] = []

    def capture(_c, _cur, statement, parameters, _ctx, _many):
        seen.append((statement, parameters))

    with client.app.state.fhir.db.engine.connect() as conn:
        sa.event.listen(conn, "before_cursor_execute", capture)
        out = run_search(conn, "Patient", params, strict=True, default_count=50, max_count=1000)
        sa.event.remove(conn, "before_cursor_execute", capture)
        for setting in ("enable_seqscan", "enable_hashjoin", "enable_bitmapscan"):
            conn.exec_driver_sql(f"SET LOCAL {setting} = off")
        plans = [conn.exec_driver_sql("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, values).scalar()[0]["Plan"] for sql, values in seen]
        conn.rollback()
    return [i for _, i, _ in out.matches], plans


def plan_nodes(node: dict) -> list[dict]:
    """A plan node and every node under it."""
    return [node, *(m for child in node.get("Plans", []) for m in plan_nodes(child))]


def keys_read(client, params: list[tuple[str, str]]) -> tuple[list[str], int]:
    """PostgreSQL: the ids a search finds and the index entries its statements read (rows times
    loops of every scan of an index table in their plans: ``planned_search``)."""
    found, plans = planned_search(client, params)
    nodes = [n for plan in plans for n in plan_nodes(plan)]
    return found, sum(n["Actual Rows"] * n["Actual Loops"] for n in nodes if str(n.get("Relation Name", "")).startswith("idx_"))
