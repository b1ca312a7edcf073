"""The real server process: the README's run command, several workers, and crash safety."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tests.bundles import entries
from tests.conftest import BACKENDS
from tests.e2e.server import ServerProcess
from tests.waiting import wait_until

TAG = {"system": "https://fhir-server.id/test", "code": "crash"}
PATIENT = {"resourceType": "Patient", "gender": "female", "name": [{"family": "Aminah"}]}
#: seconds a request may take (httpx's default is 5): a loaded machine may hold a server up that long
HTTP_TIMEOUT = 60

pytestmark = pytest.mark.slow  # real server processes: seconds each


@pytest.mark.parametrize("fresh_database_url", BACKENDS, indirect=True)
def test_serve_answers_metadata_and_crud(fresh_database_url, tmp_path):
    with ServerProcess(fresh_database_url, log=tmp_path / "server.log") as server:
        meta = httpx.get(f"{server.base}/metadata", timeout=HTTP_TIMEOUT)
        assert meta.status_code == 200 and meta.json()["fhirVersion"] == "4.0.1"
        created = httpx.post(
            f"{server.base}/Patient", json=PATIENT, headers={"Content-Type": "application/fhir+json"}, timeout=HTTP_TIMEOUT
        )
        assert created.status_code == 201
        assert httpx.get(f"{server.base}/Patient/{created.json()['id']}", timeout=HTTP_TIMEOUT).json()["name"][0]["family"] == "Aminah"


@pytest.mark.parametrize("fresh_database_url", BACKENDS, indirect=True)
def test_two_workers_share_the_data_without_conflicts(fresh_database_url, tmp_path):
    with ServerProcess(fresh_database_url, workers=2, log=tmp_path / "server.log") as server, httpx.Client(timeout=30) as http:
        pid = http.post(f"{server.base}/Patient", json=PATIENT).json()["id"]

        def create(n: int) -> int:
            with httpx.Client(timeout=30) as c:  # new connections spread over both workers
                return c.post(f"{server.base}/Patient", json={**PATIENT, "birthDate": f"2000-01-{n % 28 + 1:02d}"}).status_code

        def update(n: int) -> int:
            with httpx.Client(timeout=30) as c:
                body = {**PATIENT, "id": pid, "birthDate": f"1999-01-{n % 28 + 1:02d}"}
                return c.put(f"{server.base}/Patient/{pid}", json=body, headers={"If-Match": 'W/"1"'}).status_code

        with ThreadPoolExecutor(max_workers=16) as pool:
            created = list(pool.map(create, range(40)))
            updated = list(pool.map(update, range(20)))
        assert created == [201] * 40
        assert updated.count(200) == 1 and set(updated) <= {200, 412}
        history = http.get(f"{server.base}/Patient/{pid}/_history").json()["entry"]
        assert [e["response"]["etag"] for e in history] == ['W/"2"', 'W/"1"']
        total = http.get(f"{server.base}/Patient?_summary=count").json()["total"]
        assert total == 41


def _big_transaction(n: int) -> dict:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"urn:uuid:00000000-0000-4000-8000-{i:012d}",
                "resource": {**PATIENT, "meta": {"tag": [TAG]}, "birthDate": f"1990-01-{i % 28 + 1:02d}"},
                "request": {"method": "POST", "url": "Patient"},
            }
            for i in range(n)
        ],
    }


_PG_WRITING = (
    "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
    "WHERE l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND c.relnamespace = current_schema()::regnamespace AND c.relname = 'resources' "
    "AND l.mode = 'RowExclusiveLock' AND l.pid <> pg_backend_pid()"
)


@contextmanager
def _transaction_writing(url: str) -> Iterator[Callable[[], bool]]:
    """A test of whether a write transaction of the server has started writing Patients.

    PostgreSQL: another session holds the row-exclusive lock an INSERT takes on ``resources``
    (the audit trail and the export worker write other tables). SQLite: the write lock is
    held and the write-ahead log has grown by more than a MiB since now, which only the big
    transaction does (the pages its cache cannot keep any more, seconds before its commit)."""
    from fhir_server.storage.db import Database

    db = Database(sa.create_engine(url))
    try:
        if db.dialect != "sqlite":

            def writing() -> bool:
                with db.engine.connect() as conn:
                    return conn.exec_driver_sql(_PG_WRITING).scalar() > 0
        else:
            wal = Path(f"{db.engine.url.database}-wal")
            before = wal.stat().st_size if wal.exists() else 0

            def writing() -> bool:
                if (wal.stat().st_size if wal.exists() else 0) <= before + (1 << 20):
                    return False
                if db.try_write_lock():  # free: nobody is in a write transaction
                    db.release_write_lock()
                    return False
                return True

        yield writing
    finally:
        db.dispose()


@pytest.mark.parametrize("fresh_database_url", BACKENDS, indirect=True)
def test_sigkill_in_the_middle_of_a_transaction_leaves_nothing(fresh_database_url, tmp_path):
    big = {"FHIR_MAX_BUNDLE_ENTRIES": "20000"}
    server = ServerProcess(fresh_database_url, log=tmp_path / "server.log", env=big)
    server.wait_ready()
    outcome: dict[str, object] = {}

    def send() -> None:
        try:
            outcome["status"] = httpx.post(f"{server.base}", json=_big_transaction(12000), timeout=300).status_code
        except httpx.HTTPError as exc:
            outcome["error"] = exc

    with _transaction_writing(fresh_database_url) as writing:
        sender = threading.Thread(target=send)
        sender.start()
        # kill once the server is inside the transaction's writes (12,000 entries take seconds
        # more), however long validating them took: not after a guessed time
        try:
            wait_until(lambda: writing() or not sender.is_alive(), timeout=120, interval=0.02)
        finally:
            server.kill()
    sender.join(60)
    assert "error" in outcome, f"the transaction finished before the kill ({outcome}); make it larger"

    with ServerProcess(fresh_database_url, log=tmp_path / "restart.log", env=big) as again:
        tagged = httpx.get(
            f"{again.base}/Patient", params={"_tag": f"{TAG['system']}|{TAG['code']}", "_summary": "count"}, timeout=HTTP_TIMEOUT
        )
        assert tagged.status_code == 200 and tagged.json()["total"] == 0
        assert entries(httpx.get(f"{again.base}/Patient/_history", timeout=HTTP_TIMEOUT).json()) == []
        assert httpx.post(f"{again.base}/Patient", json=PATIENT, timeout=HTTP_TIMEOUT).status_code == 201
    if fresh_database_url.startswith("sqlite"):
        engine = sa.create_engine(fresh_database_url)
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
        engine.dispose()
