"""None binds as NULL through the adapter fhir_server.storage.db registers (a speed-up of
CPython's sqlite3, which otherwise looks for ``__adapt__`` on every None it binds)."""

from __future__ import annotations

import sqlite3

import fhir_server.storage.db  # noqa: F401 - registers the adapter


def test_none_has_a_registered_adapter() -> None:
    assert sqlite3.adapters[(type(None), sqlite3.PrepareProtocol)](None) is None


def test_none_is_still_stored_as_null_by_execute_and_executemany() -> None:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (a, b)")
    conn.execute("INSERT INTO t VALUES (?, ?)", (None, 1))
    conn.executemany("INSERT INTO t VALUES (?, ?)", [(None, 2), ("x", None)])
    conn.execute("INSERT INTO t VALUES (:a, :b)", {"a": None, "b": 3})
    assert conn.execute("SELECT typeof(a), typeof(b) FROM t ORDER BY rowid").fetchall() == [
        ("null", "integer"),
        ("null", "integer"),
        ("text", "null"),
        ("null", "integer"),
    ]
    assert conn.execute("SELECT count(*) FROM t WHERE a IS NULL").fetchone() == (3,)
