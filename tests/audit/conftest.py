"""Fixtures of the audit tests: a migrated database per backend, emptied between tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fhir_server.storage import migrate
from fhir_server.storage.audit_tables import audit_events
from fhir_server.storage.db import Database
from tests.conftest import BACKENDS, PgSchema


@pytest.fixture(scope="session", params=BACKENDS)
def audit_database(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[Database]:
    """One migrated database per backend for the audit tests."""
    schema = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('auditdb') / 'audit.sqlite3'}"
    else:
        schema = PgSchema()
        url = schema.url
    db = Database.from_url(url, pool_size=2)
    migrate.upgrade(db.engine)
    try:
        yield db
    finally:
        db.dispose()
        if schema is not None:
            schema.drop()


@pytest.fixture
def db(audit_database: Database) -> Database:
    """The audit database with no events."""
    with audit_database.write() as conn:
        conn.execute(audit_events.delete())
    return audit_database
