"""Bulk audit inserts store every row exactly as given, whatever statements they take."""

from __future__ import annotations

import random

import pytest

from fhir_server.audit import bulk_insert
from fhir_server.audit.bulk_insert import insert_rows
from fhir_server.audit.events import FULL_COLUMNS, LAYOUTS


def _rows(rng: random.Random) -> list[tuple]:
    """Anonymous, client and full rows; groups of shared values of sizes across the statement sizes."""
    rows: list[tuple] = []
    shared = [
        ("read", "R", 200, "Patient", "127.0.0.1", "wrk/4.1"),
        ("read", "R", 404, "Patient", "127.0.0.1", "wrk/4.1"),
        ("vread", "R", 200, "Encounter", "10.0.0.9", None),
        ("search-type", "E", 200, None, "10.0.0.9", "SIMRS ' ; DROP TABLE audit_events; --"),
    ]
    us = 1_700_000_000_000_000
    for n, size in zip(range(len(shared)), (517, 1, 256, 3), strict=True):
        interaction, action, status, res_type, address, ua = shared[n]
        for _ in range(size):
            us += rng.randrange(1, 50)
            res_id = None if res_type is None else f"id-{rng.randrange(10**6)}"
            rows.append((us, interaction, action, status, res_type, res_id, address, ua))
            if rng.random() < 0.3:  # the same event with a client: the 10-value layout
                rows.append((us, interaction, action, status, res_type, res_id, "simrs-1", "org-9", address, ua))
            if rng.random() < 0.05:
                rows.append((us, interaction, action, status, res_type, res_id, None, None, address, ua, "name=budi", None, "req-1", None))
    rng.shuffle(rows)
    return rows


def _as_full(row: tuple) -> tuple:
    values = dict(zip(LAYOUTS[len(row)], row, strict=True))
    return tuple(values.get(c) for c in FULL_COLUMNS)


def test_every_row_is_stored_as_given(db):
    rows = _rows(random.Random(5))
    assert {len(r) for r in rows} == set(LAYOUTS)
    with db.write() as conn:
        insert_rows(conn, rows)
    with db.read() as conn:
        stored = [tuple(r) for r in conn.exec_driver_sql(f"SELECT {', '.join(FULL_COLUMNS)} FROM audit_events")]
    assert sorted(stored, key=repr) == sorted((_as_full(r) for r in rows), key=repr)


@pytest.mark.parametrize("size", [1, 2, 127, 128, 129, 255, 1000])
def test_a_group_of_any_size_is_stored_whole(db, size):
    rows = [(1_700_000_000_000_000 + i, "read", "R", 200, "Patient", f"p{i}", "127.0.0.1", "wrk") for i in range(size)]
    with db.write() as conn:
        insert_rows(conn, rows)
    with db.read() as conn:
        stored = sorted(tuple(r) for r in conn.exec_driver_sql("SELECT recorded_us, res_id, address FROM audit_events"))
    assert stored == sorted((r[0], r[5], r[6]) for r in rows)


def test_grouped_statements_refer_to_each_row_own_values():
    sql = bulk_insert._grouped_sql(8, 2)
    assert sql.endswith("VALUES (?7, ?1, ?2, ?3, ?4, ?8, ?5, ?6), (?9, ?1, ?2, ?3, ?4, ?10, ?5, ?6)")
    # within SQLite's oldest parameter limit at the largest statement
    assert max(2 * size + width - 2 for width, size in bulk_insert._SQLITE_GROUPED) <= 999
