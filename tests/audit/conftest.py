"""Fixtures of the audit tests: a migrated database per backend, emptied between tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fhir_server.storage.audit_tables import audit_events
from fhir_server.storage.db import Database
from tests.conftest import BACKENDS, migrated_database


@pytest.fixture(scope="session", params=BACKENDS)
def audit_database(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[Database]:
    """One migrated database per backend for the audit tests."""
    with migrated_database(request.param, tmp_path_factory.mktemp("auditdb")) as db:
        yield db


@pytest.fixture
def db(audit_database: Database) -> Database:
    """The audit database with no events."""
    with audit_database.write() as conn:
        conn.execute(audit_events.delete())
    return audit_database
