"""Database.raw_reads: the search read path outside SQLAlchemy (autocommit or one snapshot)."""

from __future__ import annotations

import pytest

from fhir_server.storage.db import Database
from tests.conftest import BACKENDS, migrated_database

COUNT = "SELECT count(*) FROM resources"
INSERT = "INSERT INTO resources (res_type, res_id, version, updated_us, deleted, body) VALUES ('Patient', :id, 1, 1, FALSE, NULL)"


@pytest.fixture(params=BACKENDS)
def db(request, tmp_path):
    with migrated_database(request.param, tmp_path) as database:
        yield database


def _insert(db: Database, res_id: str) -> None:
    with db.write() as conn:
        conn.exec_driver_sql(INSERT.replace(":id", "'" + res_id + "'"))


def _count(fetch) -> int:
    return fetch(COUNT, ())[0][0]


def test_snapshot_does_not_see_a_commit_made_during_it(db):
    _insert(db, "a")
    with db.raw_reads(snapshot=True) as fetch:
        before = _count(fetch)
        _insert(db, "b")  # another connection commits in between
        assert _count(fetch) == before
    with db.raw_reads(snapshot=False) as fetch:
        assert _count(fetch) == before + 1


def test_without_snapshot_each_statement_sees_the_latest_commit(db):
    with db.raw_reads(snapshot=False) as fetch:
        before = _count(fetch)
        _insert(db, "c")
        assert _count(fetch) == before + 1


def test_an_error_inside_a_snapshot_leaves_the_connection_usable(db):
    with pytest.raises(db.engine.dialect.loaded_dbapi.Error), db.raw_reads(snapshot=True) as fetch:
        fetch("SELECT no_such_column FROM resources", ())
    with db.raw_reads(snapshot=True) as fetch:
        assert _count(fetch) == 0
    assert db.fetch_one(COUNT, ()) == (0,)


@pytest.mark.skipif("postgresql" not in BACKENDS, reason="needs FHIR_TEST_POSTGRES_URL")
def test_a_broken_postgres_reader_is_replaced(tmp_path):
    with migrated_database("postgresql", tmp_path) as db:
        assert db.fetch_one(COUNT, ()) == (0,)
        with db.raw_reads(snapshot=False) as fetch:
            assert _count(fetch) == 0
        db._reader().close()  # as if the server had closed them
        db._reader(fixed_plan=True).close()
        assert db.fetch_one(COUNT, ()) == (0,)
        with db.raw_reads(snapshot=False) as fetch:
            assert _count(fetch) == 0


@pytest.mark.skipif("postgresql" not in BACKENDS, reason="needs FHIR_TEST_POSTGRES_URL")
def test_postgres_plans_every_search_for_its_values(tmp_path):
    """Prepared statements must not fall back to PostgreSQL's value-blind generic plan;
    only a read by id's may (``fetch_one``: one unique index lookup whatever the values)."""
    with migrated_database("postgresql", tmp_path) as db:
        with db.raw_reads(snapshot=False) as fetch:
            assert fetch("SHOW plan_cache_mode", ()) == [("force_custom_plan",)]
        assert db.fetch_one("SHOW plan_cache_mode", ()) == ("auto",)
        assert db._reader(fixed_plan=True) is not db._reader()
        with db.raw_reads(snapshot=False) as fetch:  # the search reader kept its own setting
            assert fetch("SHOW plan_cache_mode", ()) == [("force_custom_plan",)]
        with db.engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW plan_cache_mode").scalar() == "force_custom_plan"
