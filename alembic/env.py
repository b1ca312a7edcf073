"""Alembic environment: one migration set for SQLite and PostgreSQL.

Run from Python by ``fhir_server.storage.migrate`` (which hands over an open
connection) or by ``fhir-server migrate``; no alembic.ini is needed.
"""

from __future__ import annotations

from alembic import context
from fhir_server.storage import (  # noqa: F401  (register their tables)
    audit_tables,
    auth_tables,
    bulk_tables,
    index_tables,
    tables,
    work_tables,
)
from fhir_server.storage.tables import metadata

config = context.config


def run_migrations() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations through fhir_server.storage.migrate (fhir-server migrate)")
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
