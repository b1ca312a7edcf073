"""Loading the scale benchmark's data straight into PostgreSQL with COPY, for sizes the API
cannot load in the time at hand (1,000,000 Patients: ~20-60 minutes through the transaction
endpoint on a shared 2-core machine, a few minutes here).

Not a write path of the server: no validation, no change log, no audit. Each resource is the
server's stored form (``stamp``: id and meta) of ``bench.data``'s Patient ``n`` and its
Encounters, its ``resources`` and ``resource_versions`` rows, and the index rows the server's own
``extract_index`` gives for it, so searches see what an API load would have left. Used by
``python -m bench scale --keep PREFIX --bulk``.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson
import psycopg
import sqlalchemy as sa

from bench import data
from fhir_server.search.extract import extract_index
from fhir_server.service.resources import stamp
from fhir_server.storage import migrate
from fhir_server.storage.db import create_engine
from fhir_server.storage.index_tables import INDEX_TABLES

_NS = uuid.UUID("5c0a1e00-0000-4000-8000-000000000000")
_KINDS = [k for k in INDEX_TABLES if k != "mpi"]  # MPI blocking keys: not used by searches
_COLUMNS = {k: [c.name for c in INDEX_TABLES[k].columns] for k in _KINDS}


def _id(kind: str, n: int, i: int = 0) -> str:
    return str(uuid.uuid5(_NS, f"{kind}-{n}-{i}"))


def load(url: str, start: int, end: int, encounters: int, *, chunk: int = 2000, progress: Callable[[int], None] | None = None) -> None:
    """Patients ``start .. end - 1`` of ``bench.data`` with ``encounters`` Encounters each."""
    engine = create_engine(url)
    try:
        migrate.upgrade(engine)
    finally:
        engine.dispose()
    dsn = sa.engine.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn) as conn:
        for lo in range(start, end, chunk):
            _chunk(conn, lo, min(end, lo + chunk), encounters)
            conn.commit()
            if progress:
                progress(min(end, lo + chunk) - lo)


def _chunk(conn: psycopg.Connection, lo: int, hi: int, encounters: int) -> None:
    docs: list[tuple[str, str, dict[str, Any]]] = []
    for n in range(lo, hi):
        rng = data.rng_for(n, data.SEED + 1)
        pid = _id("p", n)
        docs.append(("Patient", pid, data.patient(n)))
        for i in range(encounters):
            docs.append(("Encounter", _id("e", n, i), data.encounter(rng, f"Patient/{pid}", i)))
    with conn.cursor() as cur:
        cur.execute("SELECT nextval(pg_get_serial_sequence('resources', 'pk')) FROM generate_series(1, %s)", (len(docs),))
        pks = sorted(r[0] for r in cur.fetchall())
        now = int(time.time() * 1_000_000)
        res_rows, ver_rows = [], []
        idx_rows: dict[str, list[tuple]] = {k: [] for k in _KINDS}
        for pk, (res_type, res_id, doc) in zip(pks, docs, strict=True):
            stored = stamp(doc, res_id, 1, now)
            body = orjson.dumps(stored)
            res_rows.append((pk, res_type, res_id, 1, now, False, body))
            ver_rows.append((res_type, res_id, 1, now, "POST", False, body))
            for kind, extracted in extract_index(stored).by_kind().items():
                if kind in idx_rows:
                    cols = _COLUMNS[kind]
                    idx_rows[kind].extend(tuple(pk if c == "resource_pk" else r.get(c) for c in cols) for r in extracted)
        _copy(cur, "resources", ("pk", "res_type", "res_id", "version", "updated_us", "deleted", "body"), res_rows)
        _copy(cur, "resource_versions", ("res_type", "res_id", "version", "updated_us", "method", "deleted", "body"), ver_rows)
        for kind, rows in idx_rows.items():
            if rows:
                _copy(cur, INDEX_TABLES[kind].name, tuple(_COLUMNS[kind]), rows)


def _copy(cur: psycopg.Cursor, table: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
    with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


if __name__ == "__main__":  # python -m bench.bulk_load URL START END ENCOUNTERS
    t0 = time.monotonic()
    load(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
    print(f"loaded in {time.monotonic() - t0:.1f}s", file=sys.stderr)
