"""Migrations 0005 and 0008 give exactly the table of audit_tables.py; downgrades undo them."""

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
    scripts = ScriptDirectory.from_config(cfg)
    assert scripts.get_revision("0005_audit").down_revision == "0004_auth"
    assert scripts.get_revision("0008_audit_derived_ids").down_revision == "0007_string_statistics"


@pytest.mark.parametrize("fresh_database_url", BACKENDS, indirect=True)
def test_upgrade_matches_the_table_and_downgrade_removes_it(fresh_database_url):
    engine = create_engine(fresh_database_url)
    try:
        migrate.upgrade(engine, "0005_audit")
        assert "uq_audit_events_event_id" in {u["name"] for u in sa.inspect(engine).get_unique_constraints("audit_events")}
        migrate.upgrade(engine, "0008_audit_derived_ids")
        insp = sa.inspect(engine)
        table = audit_events
        columns = {c["name"]: c for c in insp.get_columns(table.name)}
        assert set(columns) == {c.name for c in table.columns}
        for col in table.columns:
            assert columns[col.name]["nullable"] == col.nullable, col.name
        assert insp.get_pk_constraint(table.name)["name"] == table.primary_key.name
        assert {i["name"] for i in insp.get_indexes(table.name)} == {i.name for i in table.indexes}
        assert {i["name"] for i in insp.get_indexes(table.name) if i["unique"]} == {"ux_audit_events_event_id"}
        assert insp.get_unique_constraints(table.name) == []
        migrate.downgrade(engine, "0004_auth")
        assert "audit_events" not in sa.inspect(engine).get_table_names()
        migrate.upgrade(engine)
        assert "audit_events" in sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()


@pytest.mark.parametrize("fresh_database_url", BACKENDS, indirect=True)
def test_downgrade_from_0008_keeps_the_ids_events_were_served_with(fresh_database_url):
    from fhir_server.audit import AuditRecord, AuditRecorder, read_audit, search_audit
    from fhir_server.storage.db import Database

    db = Database.from_url(fresh_database_url, pool_size=2)
    try:
        migrate.upgrade(db.engine)
        rec = AuditRecorder(db, start=False)
        for i in range(5):
            rec.record(AuditRecord("read", 200, res_type="Patient", res_id=f"p{i}"))
        rec.record(AuditRecord("read", 200, res_type="Patient", res_id="x", event_id="explicit"))
        assert rec.flush() == 6
        with db.read() as conn:
            served = {e["id"] for e in search_audit(conn, [], default_count=10, max_count=10)[0]}
        migrate.downgrade(db.engine, "0007_string_statistics")
        with db.read() as conn:
            stored = set(conn.exec_driver_sql("SELECT event_id FROM audit_events").scalars())
        assert stored == served and "explicit" in stored
        migrate.upgrade(db.engine)
        with db.read() as conn:
            assert all(read_audit(conn, i)["id"] == i for i in served)
    finally:
        db.dispose()
