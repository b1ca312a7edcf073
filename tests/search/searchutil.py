"""Shortcuts for search tests."""

from __future__ import annotations

from urllib.parse import parse_qsl

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
