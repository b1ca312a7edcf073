"""Micro-benchmark of the audit trail (not a test).

The figures that matter for read throughput come first ("read events"): what
auditing one ``GET /fhir/Patient/<id>`` costs, all in,

- on the request path: the ``AuditMiddleware`` around a trivial ASGI app,
  minus the trivial app alone (µs per request);
- on the recorder's thread: ``AuditRecorder.flush()`` of the events the
  middleware queued, CPU µs per event (turning them into rows, the bulk
  INSERT, the commit). That thread shares the GIL and the cores with the
  request thread, so it counts against throughput too. On PostgreSQL the
  server's CPU is not included.

Both use only the middleware and ``flush()``, so the same file measures an
older checkout (``PYTHONPATH=<checkout> python bench/audit_bench.py``). Then:
``AuditRecord`` + ``record()``, ``record_in()`` in a write transaction, and
the flush of ``AuditRecord`` events. Every figure is the best of several runs
(the machine may be busy).

    python -m bench.audit_bench [--pg URL] [--events 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from fhir_server.api.audit_middleware import AuditMiddleware
from fhir_server.audit import AuditRecord, AuditRecorder, record_in
from fhir_server.storage import migrate
from fhir_server.storage.db import Database

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _event(i: int) -> AuditRecord:
    return AuditRecord(
        "read",
        200,
        res_type="Patient",
        res_id=f"p{i % 1000}",
        client_id="simrs-rsud-1",
        organization_id="100000001",
        address="10.20.30.40",
        user_agent="SIMRS/3.1 (Java 17)",
        request_id="5f0c6a3e-9d1b-4c59-8b1e-3f1e0a1b2c3d",
    )


class _Principal:
    client_id = "simrs-rsud-1"
    organization_id = None


def _scope(i: int) -> dict:
    """A uvicorn-like scope of ``GET /fhir/Patient/<id>`` after the app set its principal."""
    return {
        "type": "http",
        "method": "GET",
        "path": f"/fhir/Patient/p{i % 1000}",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1:8080"), (b"user-agent", b"SIMRS/3.1 (Java 17)"), (b"accept", b"*/*")],
        "client": ("10.20.30.40", 40000 + i % 1000),
        "state": {"principal": _Principal()},
    }


async def _trivial_app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def _sent(message: Any) -> None:
    pass


async def _receive() -> dict:
    return {"type": "http.request"}


def _queue_reads(rec: AuditRecorder, n: int) -> float:
    """Send n reads through the audit middleware into ``rec``; µs per request above the bare app."""
    mw = AuditMiddleware(_trivial_app, recorder_for=lambda scope: rec)
    scopes = [_scope(i) for i in range(n)]

    async def run(app: Any) -> float:
        t0 = time.perf_counter()
        for sc in scopes:
            await app(sc, _receive, _sent)
        return (time.perf_counter() - t0) / n * 1e6

    bare = asyncio.run(run(_trivial_app))
    return asyncio.run(run(mw)) - bare


def bench_read_events(db: Database, n: int, runs: int = 5) -> tuple[float, float]:
    """(request-path µs, recorder-thread CPU µs) per audited read, best of ``runs``."""
    path = flush = float("inf")
    for _ in range(runs):
        rec = AuditRecorder(db, max_batch=1000, max_queue=n + 1)
        path = min(path, _queue_reads(rec, n))
        c0 = time.process_time()
        written = rec.flush()
        flush = min(flush, (time.process_time() - c0) / n * 1e6)
        assert written == n, (written, rec.last_error)
    return path, flush


def bench_record(n: int) -> tuple[float, float]:
    """µs per record() alone and per (build AuditRecord + record()), no database
    involved; the best of 5 runs (the machine may be busy)."""

    class NoDb:
        def write(self) -> None:  # pragma: no cover - never called
            raise AssertionError("record() touched the database")

    record_only = with_build = float("inf")
    for _ in range(5):
        rec = AuditRecorder(NoDb(), max_queue=n + 1)  # type: ignore[arg-type]
        events = [_event(i) for i in range(n)]
        t0 = time.perf_counter()
        for ev in events:
            rec.record(ev)
        record_only = min(record_only, (time.perf_counter() - t0) / n * 1e6)
        rec = AuditRecorder(NoDb(), max_queue=n + 1)  # type: ignore[arg-type]
        t0 = time.perf_counter()
        for _i in range(n):
            rec.record(
                AuditRecord(
                    "read",
                    200,
                    res_type="Patient",
                    res_id="p1",
                    client_id="simrs-rsud-1",
                    organization_id="100000001",
                    address="10.20.30.40",
                    user_agent="SIMRS/3.1 (Java 17)",
                    request_id="5f0c6a3e-9d1b-4c59-8b1e-3f1e0a1b2c3d",
                )
            )
        with_build = min(with_build, (time.perf_counter() - t0) / n * 1e6)
    return record_only, with_build


def bench_flush(db: Database, n: int, batch: int) -> tuple[float, float]:
    """(rows/s wall clock, CPU µs per row in this process) of flushing n queued events."""
    rec = AuditRecorder(db, max_batch=batch, max_queue=n + 1)
    for i in range(n):
        rec.record(_event(i))
    t0, c0 = time.perf_counter(), time.process_time()
    written = rec.flush()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert written == n, (written, rec.last_error)
    return n / wall, cpu / n * 1e6


def bench_record_in(db: Database, n: int) -> tuple[float, float]:
    """(wall µs, CPU µs) per record_in() inside an open write transaction."""
    events = [_event(i) for i in range(n)]
    with db.write() as conn:
        record_in(conn, events[0])  # warm up
        t0, c0 = time.perf_counter(), time.process_time()
        for ev in events[1:]:
            record_in(conn, ev)
        return (time.perf_counter() - t0) / (n - 1) * 1e6, (time.process_time() - c0) / (n - 1) * 1e6


def run(name: str, db: Database, n: int) -> None:
    migrate.upgrade(db.engine)
    path, flush = bench_read_events(db, min(n, 50_000))
    print(f"{name:10s} read events: {path:5.2f} µs request path + {flush:5.2f} µs CPU recorder thread = {path + flush:5.2f} µs per read")
    for batch in (100, 1000):
        rows_s, cpu = bench_flush(db, n, batch)
        print(f"{name:10s} flush batch={batch:<5d} {rows_s:>10,.0f} rows/s   {cpu:6.1f} µs CPU/row")
    wall, cpu = bench_record_in(db, 2000)
    print(f"{name:10s} record_in()      {wall:6.1f} µs wall, {cpu:5.1f} µs CPU per event (one INSERT in the write transaction)")
    with db.read() as conn:
        total = conn.execute(sa.text("SELECT count(*) FROM audit_events")).scalar_one()
    print(f"{name:10s} rows in table    {total:,}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pg", default=DEFAULT_PG, help="PostgreSQL URL ('' to skip)")
    ap.add_argument("--events", type=int, default=100_000)
    args = ap.parse_args()

    record_only, with_build = bench_record(args.events)
    print(f"record()                       {record_only:6.2f} µs/event")
    print(f"AuditRecord(...) + record()    {with_build:6.2f} µs/event  (the request-path cost)")

    with tempfile.TemporaryDirectory() as tmp:
        db = Database.from_url(f"sqlite:///{Path(tmp) / 'audit_bench.sqlite3'}")
        try:
            run("sqlite", db, args.events)
        finally:
            db.dispose()

    if args.pg:
        schema = f"audit_bench_{uuid.uuid4().hex[:8]}"
        admin = sa.create_engine(args.pg)
        try:
            with admin.begin() as conn:
                conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        except Exception as exc:  # noqa: BLE001
            print(f"postgresql skipped: {exc}")
            return
        sep = "&" if "?" in args.pg else "?"
        db = Database.from_url(f"{args.pg}{sep}options=-csearch_path%3D{schema}")
        try:
            run("postgresql", db, args.events)
        finally:
            db.dispose()
            with admin.begin() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
            admin.dispose()


if __name__ == "__main__":
    main()
