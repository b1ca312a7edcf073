"""One Alembic migration set for both databases: upgrade -> downgrade -> upgrade."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from fhir_server.storage import migrate
from fhir_server.storage.db import SQLITE_MMAP_BYTES, create_engine
from tests.conftest import BACKENDS


@pytest.mark.parametrize("fresh_database_url", BACKENDS, indirect=True)
def test_upgrade_downgrade_upgrade(fresh_database_url):
    engine = create_engine(fresh_database_url)
    try:
        migrate.upgrade(engine)
        head = migrate.current_revision(engine)
        assert head is not None
        assert {"resources", "resource_versions"} <= set(sa.inspect(engine).get_table_names())
        migrate.downgrade(engine, "base")
        assert migrate.current_revision(engine) is None
        assert "resources" not in sa.inspect(engine).get_table_names()
        migrate.upgrade(engine)
        assert migrate.current_revision(engine) == head
    finally:
        engine.dispose()


@pytest.mark.parametrize("fresh_database_url", BACKENDS, indirect=True)
def test_sqlite_pragmas_or_postgres_jsonb_mirror(fresh_database_url):
    engine = create_engine(fresh_database_url)
    try:
        migrate.upgrade(engine)
        with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
                assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
                assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() > 0
                assert conn.exec_driver_sql("PRAGMA mmap_size").scalar() == SQLITE_MMAP_BYTES
            else:
                conn.exec_driver_sql(
                    "INSERT INTO resources (res_type, res_id, version, updated_us, deleted, body) "
                    "VALUES ('Patient', 'p1', 1, 0, false, convert_to('{\"resourceType\":\"Patient\",\"gender\":\"male\"}', 'UTF8'))"
                )
                assert conn.exec_driver_sql("SELECT content->>'gender' FROM resources").scalar() == "male"
                assert (
                    conn.exec_driver_sql(
                        "SELECT data_type FROM information_schema.columns WHERE table_name='resources' "
                        "AND column_name='content' AND table_schema=current_schema()"
                    ).scalar()
                    == "jsonb"
                )
    finally:
        engine.dispose()
