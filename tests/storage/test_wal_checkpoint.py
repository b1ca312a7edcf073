"""SQLite's write-ahead log is checkpointed by a thread of the Database after commits, not by
the request that commits (storage/wal_checkpoint.py)."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from fhir_server.service.resources import ResourceService
from fhir_server.storage import wal_checkpoint
from fhir_server.storage.db import Database
from tests.conftest import migrated_database
from tests.waiting import wait_until


def _write_patients(db: Database, count: int) -> None:
    service = ResourceService(db)
    with db.write() as conn:
        for n in range(count):
            service.create_in(conn, "Patient", {"resourceType": "Patient", "name": [{"family": f"Wal{n}"}]})


@pytest.fixture
def sqlite_db(tmp_path: Path):
    with migrated_database("sqlite", tmp_path) as db:
        yield db


def test_a_commit_starts_the_thread_and_connections_checkpoint_only_past_the_backstop(sqlite_db):
    with sqlite_db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == wal_checkpoint.BACKSTOP_PAGES
    checkpointer = sqlite_db._checkpointer
    assert checkpointer is not None and checkpointer._thread is None  # nothing committed yet
    _write_patients(sqlite_db, 1)
    assert checkpointer._thread is not None and checkpointer._thread.is_alive()


def test_after_commits_the_thread_has_copied_the_log_into_the_database_file(sqlite_db, tmp_path):
    db_file = tmp_path / "fhir.sqlite3"
    before = db_file.stat().st_size
    _write_patients(sqlite_db, 300)  # a few hundred pages: far below the backstop
    # the database file grows only by checkpoints; nothing else in the process checkpoints
    # below 10,000 pages of log
    wait_until(lambda: db_file.stat().st_size > before)


def test_without_the_thread_the_log_is_not_copied_below_the_backstop(tmp_path):
    """The same writes with the thread stopped: the file does not grow (what the test above
    sees is the thread's work, not the connections' own automatic checkpoint)."""
    with migrated_database("sqlite", tmp_path) as db:
        assert db._checkpointer is not None
        db._checkpointer.stop()
        db_file = tmp_path / "fhir.sqlite3"
        conn = sqlite3.connect(db_file)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # start from an empty log
        conn.close()
        before = db_file.stat().st_size
        _write_patients(db, 300)
        assert db_file.stat().st_size == before


def test_dispose_stops_the_thread(tmp_path):
    with migrated_database("sqlite", tmp_path) as db:
        _write_patients(db, 1)
        checkpointer = db._checkpointer
        assert checkpointer is not None
        wait_until(lambda: checkpointer._thread is not None and checkpointer._thread.is_alive())
        thread = checkpointer._thread
    assert thread is not None
    wait_until(lambda: not thread.is_alive())


def _child(checkpointer: wal_checkpoint.Checkpointer, answer) -> None:
    # the parent's thread did not come along, and its connection is kept but not used
    answer.send((checkpointer._thread is None, checkpointer._conn is None, len(wal_checkpoint._inherited)))
    answer.close()


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="fork only")
def test_a_forked_child_starts_afresh_and_never_closes_the_parents_connection(sqlite_db):
    _write_patients(sqlite_db, 1)
    checkpointer = sqlite_db._checkpointer
    assert checkpointer is not None
    wait_until(lambda: checkpointer._conn is not None)
    mine, theirs = multiprocessing.get_context("fork").Pipe()
    process = multiprocessing.get_context("fork").Process(target=_child, args=(checkpointer, theirs))
    process.start()
    no_thread, no_conn, inherited = mine.recv()
    process.join(timeout=30)
    assert process.exitcode == 0
    assert no_thread and no_conn and inherited >= 1
    assert checkpointer._thread is not None and checkpointer._thread.is_alive()  # the parent's goes on


def test_postgresql_has_no_checkpoint_thread(tmp_path):
    from tests.conftest import BACKENDS

    if "postgresql" not in BACKENDS:
        pytest.skip("PostgreSQL is not configured for the tests")
    with migrated_database("postgresql", tmp_path) as db:
        assert db._checkpointer is None
