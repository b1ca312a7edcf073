"""Migration 0005 creates exactly the table of audit_tables.py and removes it on downgrade."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.config import Config
from alembic.script import ScriptDirectory

from fhir_server.storage import migrate
from fhir_server.storage.audit_tables import audit_events
from fhir_server.storage.db import create_engine
from tests.conftest import BACKENDS

ROOT = Path(__file__).resolve().parents[2]


def test_revision_chain():
    cfg = Config()
    cfg.set_main_option("script_location", str(ROOT / "alembic"))
    assert ScriptDirectory.from_config(cfg).get_revision("0005_audit").down_revision == "0004_auth"


@pytest.mark.parametrize("fresh_database_url", BACKENDS, indirect=True)
def test_upgrade_matches_the_table_and_downgrade_removes_it(fresh_database_url):
    engine = create_engine(fresh_database_url)
    try:
        migrate.upgrade(engine, "0005_audit")
        insp = sa.inspect(engine)
        table = audit_events
        columns = {c["name"]: c for c in insp.get_columns(table.name)}
        assert set(columns) == {c.name for c in table.columns}
        for col in table.columns:
            assert columns[col.name]["nullable"] == col.nullable, col.name
        assert insp.get_pk_constraint(table.name)["name"] == table.primary_key.name
        assert {i["name"] for i in insp.get_indexes(table.name) if not i.get("unique")} == {
            i.name for i in table.indexes}
        uniques = {u["name"] for u in insp.get_unique_constraints(table.name)}
        assert "uq_audit_events_event_id" in uniques
        migrate.downgrade(engine, "0004_auth")
        assert "audit_events" not in sa.inspect(engine).get_table_names()
        migrate.upgrade(engine)
        assert "audit_events" in sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()
