"""The change log (storage/changelog.py): one row per committed create, update and delete, in
commit order, attributed to the client, never for a rolled-back write."""

from __future__ import annotations

import threading

import pytest

from fhir_server.errors import FhirError
from fhir_server.service.resources import ResourceService
from fhir_server.storage import changelog
from tests.conftest import BACKENDS

NIK = "https://fhir.kemkes.go.id/id/nik"


@pytest.fixture
def service(client) -> ResourceService:
    return client.app.state.fhir.resources


def _patient(family: str) -> dict:
    return {"resourceType": "Patient", "name": [{"family": family}]}


def _log(service: ResourceService, position: int = 0) -> list[changelog.Change]:
    with service.db.read() as conn:
        return changelog.read_after(conn, position, limit=100_000)


def test_create_update_delete_each_leave_one_row_in_order(service: ResourceService):
    with service.db.read() as conn:
        start = changelog.last_seq(conn)
    pid = service.create("Patient", _patient("Lubis")).stored.res_id
    service.update("Patient", pid, {**_patient("Nasution"), "id": pid})
    service.update("Patient", pid, {**_patient("Nasution"), "id": pid})  # unchanged: no new version, no row
    service.delete("Patient", pid)
    service.update("Patient", pid, {**_patient("Siregar"), "id": pid})  # brought back
    rows = _log(service, start)
    assert [(c.res_type, c.res_id, c.version, c.action) for c in rows] == [
        ("Patient", pid, 1, "create"),
        ("Patient", pid, 2, "update"),
        ("Patient", pid, 3, "delete"),
        ("Patient", pid, 4, "create"),
    ]
    assert [c.seq for c in rows] == sorted(c.seq for c in rows) and all(c.client_id is None for c in rows)
    assert all(c.recorded_us > 0 for c in rows)


def test_a_rolled_back_write_leaves_no_row(service: ResourceService):
    with service.db.read() as conn:
        start = changelog.last_seq(conn)
    with pytest.raises(FhirError), service.db.write() as conn:
        service.create_in(conn, "Patient", _patient("Gagal"))
        raise FhirError.of(409, "conflict", "rolled back on purpose")
    assert _log(service, start) == []


def test_changes_are_attributed_to_the_acting_client(service: ResourceService):
    with service.db.read() as conn:
        start = changelog.last_seq(conn)
    with service.db.write() as conn:
        with changelog.acting_as(conn, "simrs-1"):
            service.create_in(conn, "Patient", _patient("Klien"))
        service.create_in(conn, "Patient", _patient("Server"))
    assert [c.client_id for c in _log(service, start)] == ["simrs-1", None]


@pytest.mark.parametrize("backend_url", [b for b in BACKENDS if b == "postgresql"], indirect=True)
def test_seq_follows_commit_order_not_the_order_writes_began(service: ResourceService):
    """A transaction that began first but commits last gets the later number (PostgreSQL: a
    sequence value taken early would let a reader skip it; SQLite writers never overlap)."""
    with service.db.read() as conn:
        start = changelog.last_seq(conn)
    first_written, release = threading.Event(), threading.Event()

    def slow_writer() -> None:
        with service.db.write() as conn:
            service.create_in(conn, "Patient", _patient("Pertama"))
            first_written.set()
            release.wait(60)

    thread = threading.Thread(target=slow_writer)
    thread.start()
    try:
        assert first_written.wait(30)
        service.create("Patient", _patient("Kedua"))  # begins later, commits first
        assert [c.action for c in _log(service, start)] == ["create"]  # the open one is not visible
    finally:
        release.set()
        thread.join()
    rows = _log(service, start)
    families = []
    for c in rows:
        families.append(service.read("Patient", c.res_id).body)
    assert [b"Kedua" in body for body in families] == [True, False]


def test_a_reader_following_concurrent_writers_never_skips_a_change(service: ResourceService):
    """Readers keep a position and read ``seq > position``: with writers committing in parallel
    no row may appear behind a position a reader has passed."""
    with service.db.read() as conn:
        start = changelog.last_seq(conn)
    done = threading.Event()
    seen: list[int] = []

    def follow() -> None:
        position = start
        while True:
            finished = done.is_set()
            with service.db.read() as conn:
                rows = changelog.read_after(conn, position)
            for c in rows:
                seen.append(c.seq)
                position = c.seq
            if finished and not rows:
                return

    def write(n: int) -> None:
        for k in range(25):
            service.create("Patient", _patient(f"W{n}-{k}"))

    reader = threading.Thread(target=follow)
    reader.start()
    writers = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    done.set()
    reader.join(60)
    everything = [c.seq for c in _log(service, start)]
    assert len(everything) == 100
    assert seen == everything
