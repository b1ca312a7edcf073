"""PostgreSQL: stored bodies are compressed with LZ4 (alembic 0024), read back unchanged."""

from __future__ import annotations

import pytest

from fhir_server.config import Settings
from fhir_server.state import build_state
from fhir_server.storage import migrate
from fhir_server.storage.db import create_engine
from tests.conftest import BACKENDS

pytestmark = pytest.mark.skipif("postgresql" not in BACKENDS, reason="needs FHIR_TEST_POSTGRES_URL")

COLUMNS = {("resources", "body"), ("resources", "content"), ("resource_versions", "body")}
_METHODS = (
    "SELECT attrelid::regclass::text, attname, attcompression FROM pg_attribute "
    "WHERE attrelid IN ('resources'::regclass, 'resource_versions'::regclass) AND attname IN ('body', 'content')"
)


def _methods(engine) -> dict[tuple[str, str], str]:
    with engine.connect() as conn:
        return {(table, column): method for table, column, method in conn.exec_driver_sql(_METHODS)}


@pytest.mark.parametrize("fresh_database_url", ["postgresql"], indirect=True)
def test_bodies_are_stored_lz4_compressed_and_read_back(fresh_database_url):
    engine = create_engine(fresh_database_url)
    try:
        with engine.connect() as conn:  # this machine's PostgreSQL has it (Debian's build): the test must not pass by skipping
            assert "lz4" in conn.exec_driver_sql("SELECT enumvals FROM pg_settings WHERE name = 'default_toast_compression'").scalar()
        migrate.upgrade(engine)
        assert _methods(engine) == {key: "l" for key in COLUMNS}
        state = build_state(Settings(database_url=fresh_database_url))
        try:
            note = " ".join(f"catatan {n}: pasien datang dengan keluhan demam" for n in range(200))  # ~10 kB, compressible
            patient = {
                "resourceType": "Patient",
                "id": "long",
                "text": {"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{note}</div>'},
            }
            assert state.resources.update("Patient", "long", patient).status == 201
            with engine.connect() as conn:
                compressed = conn.exec_driver_sql(
                    "SELECT pg_column_compression(r.body), pg_column_compression(r.content), pg_column_compression(v.body) "
                    "FROM resources r JOIN resource_versions v USING (res_type, res_id) WHERE r.res_id = 'long'"
                ).one()
            assert tuple(compressed) == ("lz4", "lz4", "lz4")
            stored = state.resources.read("Patient", "long")
            assert note in stored.body.decode()
        finally:
            state.db.dispose()
        migrate.downgrade(engine, "0023_partial_reference_indexes")
        assert _methods(engine) == {key: "" for key in COLUMNS}  # the server's default again
    finally:
        engine.dispose()
