"""``python -m bench.explain URL 'Patient?family=Santoso&_count=20' ...``: the SQL statements one
search runs (``engine.run_search``), each with its ``EXPLAIN (ANALYZE, BUFFERS)`` plan, and the
search's wall time (best of ``--runs``). Buffers and row counts do not move with the machine's
load, unlike milliseconds: the evidence for a plan on a shared machine.
"""

from __future__ import annotations

import argparse
import time
from typing import Any
from urllib.parse import parse_qsl

import sqlalchemy as sa

from fhir_server.search.engine import run_search
from fhir_server.storage.db import create_engine


def statements(conn: sa.Connection, res_type: str, params: list[tuple[str, str]]) -> tuple[list[tuple[str, Any]], float, int]:
    """The statements of one search, its best time over 5 runs, and its number of matches on the page."""
    seen: list[tuple[str, Any]] = []

    def capture(_c: Any, _cur: Any, statement: str, parameters: Any, _ctx: Any, _many: bool) -> None:
        seen.append((statement, parameters))

    best, n = float("inf"), 0
    for attempt in range(6):
        if attempt == 5:
            sa.event.listen(conn, "before_cursor_execute", capture)
        t0 = time.perf_counter()
        out = run_search(conn, res_type, params, strict=True, default_count=50, max_count=1000)
        best = min(best, time.perf_counter() - t0)
        n = len(out.matches)
    sa.event.remove(conn, "before_cursor_execute", capture)
    return seen, best, n


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.explain", description=__doc__.split("\n\n")[0])
    ap.add_argument("url", help="SQLAlchemy database URL (PostgreSQL)")
    ap.add_argument("search", nargs="+", help="Type?query, e.g. 'Patient?birthdate=ge1980-05-01&birthdate=le1980-05-28&_count=20'")
    ap.add_argument("--no-plans", action="store_true", help="only the statements and the time")
    args = ap.parse_args()
    engine = create_engine(args.url)
    try:
        with engine.connect() as conn:
            for search in args.search:
                res_type, _, query = search.partition("?")
                seen, best, n = statements(conn, res_type, parse_qsl(query, keep_blank_values=True))
                print(f"=== {search}: {n} on the page, best {best * 1000:.2f} ms, {len(seen)} statement(s)")
                for sql, params in seen:
                    print(f"--- {sql}\n    {params}")
                    if not args.no_plans:
                        for (line,) in conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + sql, params):
                            print("    " + line)
                conn.rollback()
    finally:
        engine.dispose()


if __name__ == "__main__":
    main()
