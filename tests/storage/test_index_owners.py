"""Every search-index row belongs to a stored resource, on both engines.

SQLite checks it with its foreign keys; PostgreSQL with one check per statement over the rows
the statement wrote (alembic 0025: the per-row foreign-key checks were ~20 % of its CPU in an
import). Either way a row naming no resource is refused by the database itself, by INSERT and
by COPY, and deleting a resource row deletes its index rows.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from fhir_server.storage import migrate
from fhir_server.storage.index_tables import INDEX_TABLES
from tests.conftest import BACKENDS, migrated_database

#: table name -> table
TABLES = {t.name: t for t in INDEX_TABLES.values()}
_RESOURCE = "INSERT INTO resources (res_type, res_id, version, updated_us, deleted, body) VALUES ('Patient', :id, 1, 1, FALSE, :body)"


@pytest.fixture(params=BACKENDS)
def db(request, tmp_path):
    with migrated_database(request.param, tmp_path) as db:
        yield db


@pytest.fixture
def pg_db(tmp_path):
    if "postgresql" not in BACKENDS:
        pytest.skip("needs FHIR_TEST_POSTGRES_URL")
    with migrated_database("postgresql", tmp_path) as db:
        yield db


def _pk(conn: sa.Connection, res_id: str) -> int:
    conn.execute(sa.text(_RESOURCE), {"id": res_id, "body": b"{}"})
    return conn.execute(sa.text("SELECT pk FROM resources WHERE res_id = :id"), {"id": res_id}).scalar_one()


def _count(db, table: str, pk: int) -> int:
    with db.engine.connect() as conn:
        return conn.execute(sa.text(f"SELECT count(*) FROM {table} WHERE resource_pk = :pk"), {"pk": pk}).scalar_one()


def _row(table: str, pk: int) -> dict[str, object]:
    """A row of ``table`` for ``pk`` with every required column filled."""
    required = [c for c in TABLES[table].columns if c.name != "resource_pk" and not c.nullable]
    return {"resource_pk": pk, **{c.name: (1 if c.type.python_type in (int, float) else "x") for c in required}}


@pytest.mark.parametrize("table", sorted(TABLES))
def test_a_row_naming_no_resource_is_refused(db, table):
    insert = sa.insert(TABLES[table])
    with db.engine.begin() as conn:
        owner = _pk(conn, "owner")
        conn.execute(insert, [_row(table, owner)])  # an owned row goes in
    with pytest.raises(sa.exc.IntegrityError), db.engine.begin() as conn:
        conn.execute(insert, [_row(table, owner), _row(table, owner + 1000)])
    assert _count(db, table, owner) == 1  # the statement's owned row went with it


def test_copy_of_a_row_naming_no_resource_is_refused(pg_db):
    """COPY is PostgreSQL's way in (SQLite's executemany is the first test's)."""
    raw = pg_db.engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute(
            "INSERT INTO resources (res_type, res_id, version, updated_us, deleted, body) VALUES ('Patient', 'c', 1, 1, FALSE, '{}')"
        )
        cur.execute("SELECT pk FROM resources WHERE res_id = 'c'")
        owner = cur.fetchone()[0]
        with pytest.raises(Exception) as refused, cur.copy("COPY idx_token (resource_pk, param, code) FROM STDIN") as copy:
            copy.write_row((owner, "identifier", "a"))
            copy.write_row((owner + 1000, "identifier", "b"))
        assert getattr(refused.value, "sqlstate", None) == "23503"  # foreign_key_violation, as a foreign key said it
        raw.rollback()
    finally:
        raw.close()


def test_deleting_a_resource_row_deletes_its_index_rows(db):
    with db.engine.begin() as conn:
        gone, kept = _pk(conn, "gone"), _pk(conn, "kept")
        for pk in (gone, kept):
            for table in ("idx_token", "idx_string"):
                conn.execute(sa.insert(TABLES[table]), _row(table, pk))
    with db.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM resources WHERE pk = :pk"), {"pk": gone})
    assert [_count(db, t, gone) for t in ("idx_token", "idx_string")] == [0, 0]
    assert [_count(db, t, kept) for t in ("idx_token", "idx_string")] == [1, 1]


def test_postgresql_checks_once_per_statement_and_the_downgrade_restores_the_foreign_keys(pg_db):
    """SQLite keeps its foreign keys."""
    db = pg_db

    def foreign_keys() -> set[str]:
        with db.engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT conrelid::regclass::text FROM pg_constraint WHERE contype = 'f' AND confrelid = 'resources'::regclass"
            )
            return {name for (name,) in rows}

    def owner_triggers() -> set[str]:
        with db.engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT c.relname FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid JOIN pg_class c ON c.oid = t.tgrelid "
                "WHERE p.proname = 'fhir_index_rows_have_owners' AND c.relnamespace = current_schema()::regnamespace"
            )
            return {name for (name,) in rows}

    assert foreign_keys() == {"conditional_keys"}
    assert owner_triggers() == set(TABLES)
    migrate.downgrade(db.engine, "0024_lz4_bodies")
    assert foreign_keys() == {"conditional_keys", *TABLES}
    assert owner_triggers() == set()
    migrate.upgrade(db.engine)
    assert foreign_keys() == {"conditional_keys"}
