"""The ``idx_mpi`` blocking-key table: the migration (with its backfill of stored Patients) and the
rows every write path keeps, on SQLite and PostgreSQL."""

from __future__ import annotations

import orjson
import pytest
import sqlalchemy as sa

from fhir_server.mpi.blocking import stored_keys
from fhir_server.mpi.features import extract
from fhir_server.storage import migrate
from fhir_server.storage.db import create_engine
from fhir_server.storage.index_tables import idx_mpi
from tests.conftest import BACKENDS
from tests.mpi.helpers import SITI


@pytest.mark.parametrize("fresh_database_url", BACKENDS, indirect=True)
def test_the_migration_creates_the_table_and_fills_it_for_stored_patients(fresh_database_url):
    engine = create_engine(fresh_database_url)
    try:
        migrate.upgrade(engine, "0012_export_job_options")
        with engine.begin() as conn:
            for pk, (res_type, body, deleted) in enumerate(
                [("Patient", SITI, False), ("Patient", SITI, True), ("Observation", {"resourceType": "Observation"}, False)], start=1
            ):
                conn.execute(
                    sa.text(
                        "INSERT INTO resources (pk, res_type, res_id, version, updated_us, deleted, body) "
                        "VALUES (:pk, :t, :id, 1, 0, :d, :b)"
                    ),
                    {"pk": pk, "t": res_type, "id": f"r{pk}", "d": deleted, "b": orjson.dumps(body)},
                )
        migrate.upgrade(engine, "0013_mpi")
        insp = sa.inspect(engine)
        assert {c["name"] for c in insp.get_columns("idx_mpi")} == {c.name for c in idx_mpi.columns}
        assert {i["name"]: i["column_names"] for i in insp.get_indexes("idx_mpi")} == {
            i.name: [c.name for c in i.columns] for i in idx_mpi.indexes
        }
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT resource_pk, key FROM idx_mpi ORDER BY key")).all()
        assert {pk for pk, _ in rows} == {1}  # the deleted Patient and the Observation get none
        assert sorted(k for _, k in rows) == sorted(stored_keys(extract(SITI)))
        migrate.downgrade(engine, "0012_export_job_options")
        assert "idx_mpi" not in sa.inspect(engine).get_table_names()
        migrate.upgrade(engine)
    finally:
        engine.dispose()


def test_patient_keys_are_written_with_the_other_index_rows(client):
    r = client.post("/fhir/Patient", content=orjson.dumps(SITI), headers={"Content-Type": "application/fhir+json"})
    pid = r.json()["id"]
    engine = client.app.state.fhir.db.engine
    with engine.connect() as conn:
        keys = conn.execute(
            sa.text("SELECT key FROM idx_mpi JOIN resources ON resources.pk = idx_mpi.resource_pk WHERE resources.res_id = :id"),
            {"id": pid},
        ).scalars()
        assert sorted(keys) == sorted(stored_keys(extract(SITI)))
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": f"Patient/{pid}"}}
    client.post("/fhir/Observation", content=orjson.dumps(obs), headers={"Content-Type": "application/fhir+json"})
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(DISTINCT resource_pk) FROM idx_mpi")).scalar_one() == 1
