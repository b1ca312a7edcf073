"""Migration 0004 creates exactly the tables of auth_tables.py and removes them on downgrade."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.config import Config
from alembic.script import ScriptDirectory

from fhir_server.storage import migrate
from fhir_server.storage.auth_tables import AUTH_TABLES
from fhir_server.storage.db import create_engine
from tests.conftest import BACKENDS

ROOT = Path(__file__).resolve().parents[2]


def test_revision_chain():
    cfg = Config()
    cfg.set_main_option("script_location", str(ROOT / "alembic"))
    assert ScriptDirectory.from_config(cfg).get_revision("0004_auth").down_revision == "0003_conditional_keys"


@pytest.mark.parametrize("fresh_database_url", BACKENDS, indirect=True)
def test_upgrade_matches_the_tables_and_downgrade_removes_them(fresh_database_url):
    engine = create_engine(fresh_database_url)
    try:
        migrate.upgrade(engine, "0004_auth")
        insp = sa.inspect(engine)
        for table in AUTH_TABLES:
            assert {c["name"] for c in insp.get_columns(table.name)} == {c.name for c in table.columns}
            assert insp.get_pk_constraint(table.name)["name"] == table.primary_key.name
            assert set(insp.get_pk_constraint(table.name)["constrained_columns"]) == {c.name for c in table.primary_key.columns}
            assert {i["name"] for i in insp.get_indexes(table.name)} == {i.name for i in table.indexes}
            assert {fk["name"] for fk in insp.get_foreign_keys(table.name)} == {fk.name for fk in table.foreign_key_constraints}
        migrate.downgrade(engine, "0003_conditional_keys")
        assert not set(sa.inspect(engine).get_table_names()) & {t.name for t in AUTH_TABLES}
    finally:
        engine.dispose()
