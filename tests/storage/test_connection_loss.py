"""A PostgreSQL server that closed the pool's connections (a restart, ``pg_terminate_backend``,
an idle timeout) costs no request: a checked-out connection the server has closed is replaced
before it is used (``storage/db.py``: one look at its socket instead of a ping round trip)."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from fhir_server.app import create_app
from fhir_server.config import Settings
from fhir_server.storage.db import Database
from tests.conftest import BACKENDS, POSTGRES_URL, database
from tests.waiting import wait_until

pytestmark = pytest.mark.parametrize("backend", [b for b in BACKENDS if b == "postgresql"])


def _terminate(application_name: str) -> int:
    """Terminate the named connections' server processes and wait until those processes have
    exited (a terminated process sends its FATAL message and closes the socket as it exits, a moment
    after ``pg_terminate_backend`` returns). The wait is on the terminated pids, not on the name: the
    app's change-log listener reconnects under the same name as soon as its connection drops."""
    admin = sa.create_engine(POSTGRES_URL)
    try:
        with admin.begin() as conn:
            named = conn.execute(sa.text("SELECT pid FROM pg_stat_activity WHERE application_name = :n"), {"n": application_name})
            pids = [
                pid for pid in named.scalars().all() if conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar_one()
            ]
        wait_until(lambda: not _alive(admin, pids), message="terminated connections gone")
    finally:
        admin.dispose()
    return len(pids)


def _alive(admin: sa.Engine, pids: list[int]) -> list[int]:
    with admin.connect() as conn:
        stmt = sa.text("SELECT pid FROM pg_stat_activity WHERE pid = ANY(:p)")
        return list(conn.execute(stmt, {"p": pids}).scalars())


def _named(url: str) -> tuple[str, str]:
    name = f"fhir-conn-loss-{uuid.uuid4().hex[:8]}"
    return f"{url}&application_name={name}", name


def test_a_read_after_the_server_closed_the_pooled_connections_succeeds(backend, tmp_path):
    with database(backend, tmp_path) as url:
        named, name = _named(url)
        db = Database.from_url(named, pool_size=2)
        try:
            with db.read() as conn:
                assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1
            assert _terminate(name) >= 1
            for _ in range(3):  # every pooled connection was closed: each is replaced in turn
                with db.read() as conn:
                    assert conn.execute(sa.text("SELECT 2")).scalar_one() == 2
        finally:
            db.dispose()


def test_requests_after_the_server_closed_the_pools_connections_all_succeed(backend, tmp_path):
    with database(backend, tmp_path) as url:
        named, name = _named(url)
        app = create_app(Settings(database_url=named, base_url="http://testserver/fhir"))
        with TestClient(app) as client:
            created = client.post("/fhir/Patient", json={"resourceType": "Patient", "name": [{"family": "Sari"}]})
            assert created.status_code == 201
            pid = created.json()["id"]
            assert client.get(f"/fhir/Patient/{pid}").status_code == 200
            assert _terminate(name) >= 1
            assert client.get(f"/fhir/Patient/{pid}").status_code == 200
            assert client.get("/fhir/Patient", params={"family": "Sari"}).json()["total"] == 1
            again = client.put(f"/fhir/Patient/{pid}", json={"resourceType": "Patient", "id": pid, "name": [{"family": "Dewi"}]})
            assert again.status_code == 200, again.text
            assert client.post("/fhir/Patient", json={"resourceType": "Patient"}).status_code == 201
