"""The 0002 migration creates exactly the tables and indexes of index_tables.py."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.config import Config
from alembic.script import ScriptDirectory

from alembic import command
from fhir_server.storage.index_tables import INDEX_TABLES

ROOT = Path(__file__).resolve().parents[2]
#: index tables later migrations add (tests/mpi/test_blocking_index.py checks those)
LATER = {"idx_mpi"}
#: indexes later migrations add to the tables of 0002 (checked in tests/search/test_date_span.py)
LATER_INDEXES = {"ix_idx_date_param_span"}
#: indexes later migrations widen (0020_probe_indexes): their columns as 0002 made them
WIDENED_LATER = {f"ix_{t}_resource_pk": ["resource_pk", "param"] for t in ("idx_token", "idx_string", "idx_date")}


def _config(conn) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(ROOT / "alembic"))
    cfg.attributes["connection"] = conn
    return cfg


def test_revision_chain():
    cfg = Config()
    cfg.set_main_option("script_location", str(ROOT / "alembic"))
    rev = ScriptDirectory.from_config(cfg).get_revision("0002_search_index")
    assert rev.down_revision == "0001_core"


@pytest.mark.skipif(not (ROOT / "alembic" / "env.py").exists(), reason="alembic/env.py not written yet")
def test_upgrade_matches_metadata_and_downgrades(engine):
    url = engine.url
    schema = None
    if engine.dialect.name == "sqlite":
        mig_engine = sa.create_engine(f"sqlite:///{Path(url.database).with_name('migrate.db')}")
    else:
        schema = "m_" + secrets.token_hex(6)
        with engine.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
        mig_engine = sa.create_engine(url, connect_args={"options": f"-csearch_path={schema}"})
    with mig_engine.begin() as conn:
        command.upgrade(_config(conn), "0002_search_index")
    insp = sa.inspect(mig_engine)
    for table in INDEX_TABLES.values():
        if table.name in LATER:
            continue
        cols = {c["name"] for c in insp.get_columns(table.name)}
        assert cols == {c.name for c in table.columns}
        assert {i["name"]: i["column_names"] for i in insp.get_indexes(table.name)} == {
            i.name: WIDENED_LATER.get(i.name, [c.name for c in i.columns]) for i in table.indexes if i.name not in LATER_INDEXES
        }
        fks = insp.get_foreign_keys(table.name)
        assert [(fk["referred_table"], fk["options"].get("ondelete")) for fk in fks] == [("resources", "CASCADE")]
    with mig_engine.begin() as conn:
        command.downgrade(_config(conn), "0001_core")
    assert not set(sa.inspect(mig_engine).get_table_names()) & {t.name for t in INDEX_TABLES.values()}
    mig_engine.dispose()
    if schema:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
