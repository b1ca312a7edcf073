"""Fixtures of the auth tests: a migrated database per backend, emptied between tests, and client keys."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from fhir_server.storage.auth_tables import AUTH_TABLES
from fhir_server.storage.db import Database
from tests.conftest import BACKENDS, migrated_database


@pytest.fixture(scope="session", params=BACKENDS)
def auth_database(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[Database]:
    """One migrated database per backend for the auth tests."""
    with migrated_database(request.param, tmp_path_factory.mktemp("authdb")) as db:
        yield db


@pytest.fixture
def db(auth_database: Database) -> Database:
    """The auth database with no clients, used jtis or signing keys."""
    with auth_database.write() as conn:
        for table in reversed(AUTH_TABLES):
            conn.execute(table.delete())
    return auth_database


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())
