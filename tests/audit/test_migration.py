"""Migrations 0005, 0008 and 0009 give exactly the table of audit_tables.py; downgrades undo them."""

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
        rec = AuditRecorder(db)
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


@pytest.mark.parametrize("fresh_database_url", BACKENDS, indirect=True)
def test_0009_makes_the_client_index_partial_and_its_downgrade_restores_it(fresh_database_url):
    engine = create_engine(fresh_database_url)
    name = "ix_audit_events_client_id_recorded_us_pk"

    def client_index() -> dict:
        (index,) = [i for i in sa.inspect(engine).get_indexes("audit_events") if i["name"] == name]
        return index

    try:
        migrate.upgrade(engine, "0008_audit_derived_ids")
        with engine.begin() as conn:
            for client in ("anonymous", "simrs-1"):
                conn.exec_driver_sql(
                    "INSERT INTO audit_events (recorded_us, interaction, action, status, client_id) "
                    f"VALUES (1, 'read', 'R', 200, '{client}')"
                )
        migrate.upgrade(engine, "0009_audit_client_index_partial")
        with engine.connect() as conn:  # anonymous events are stored without a client now
            assert sorted(conn.exec_driver_sql("SELECT client_id FROM audit_events").scalars(), key=str) == [None, "simrs-1"]
        index = client_index()
        assert index["column_names"] == ["client_id", "recorded_us", "pk"]
        where = index.get("dialect_options", {}).get(f"{engine.dialect.name}_where")
        assert where is not None and "client_id IS NOT NULL" in str(where)
        with engine.connect() as conn:  # client_id = ? implies IS NOT NULL: the index still serves the search
            if engine.dialect.name == "sqlite":
                plan = " ".join(
                    r[-1]
                    for r in conn.exec_driver_sql(
                        "EXPLAIN QUERY PLAN SELECT pk FROM audit_events WHERE client_id = 'c' ORDER BY recorded_us DESC"
                    )
                )
                assert name in plan, plan
        migrate.downgrade(engine, "0008_audit_derived_ids")
        assert not client_index().get("dialect_options", {}).get(f"{engine.dialect.name}_where")
    finally:
        engine.dispose()
