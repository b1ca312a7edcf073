"""Every write goes through the pipeline's one asynchronous write path: PUT, PATCH, DELETE,
conditional writes and batch entries wait for SQLite's write lock without blocking the event
loop, which keeps answering reads meanwhile (the lock is held by another "process": a second
Database on the same file, whose flock excludes this one's)."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest
import sqlalchemy as sa

from fhir_server.storage.db import Database
from tests.patches import replace_code

FHIR_JSON = {"Content-Type": "application/fhir+json"}
PATCH = replace_code("Patient.gender", "other")


def _patient(family: str) -> dict:
    return {"resourceType": "Patient", "gender": "female", "name": [{"family": family}]}


@pytest.mark.parametrize("backend_url", ["sqlite"], indirect=True)
def test_writes_wait_for_another_process_lock_while_the_loop_answers_reads(client):
    ids = [client.post("/fhir/Patient", json=_patient(f"P{n}"), headers=FHIR_JSON).json()["id"] for n in range(4)]
    other = Database(sa.create_engine(client.app.state.fhir.db.engine.url))
    held, release = threading.Event(), threading.Event()

    def other_process_writing() -> None:
        with other.write():
            held.set()
            release.wait(120)  # until the test says so (the timeout only ends a broken test)

    holder = threading.Thread(target=other_process_writing)
    holder.start()
    assert held.wait(30)

    async def main() -> tuple[list[int], list[httpx.Response]]:
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            writes = [
                asyncio.ensure_future(http.put(f"/fhir/Patient/{ids[0]}", json={**_patient("Baru"), "id": ids[0]}, headers=FHIR_JSON)),
                asyncio.ensure_future(http.patch(f"/fhir/Patient/{ids[1]}", json=PATCH, headers=FHIR_JSON)),
                asyncio.ensure_future(http.delete(f"/fhir/Patient/{ids[2]}")),
                asyncio.ensure_future(http.put("/fhir/Patient?name=Kondisi", json=_patient("Kondisi"), headers=FHIR_JSON)),
                asyncio.ensure_future(
                    http.post(
                        "/fhir",
                        headers=FHIR_JSON,
                        json={
                            "resourceType": "Bundle",
                            "type": "batch",
                            "entry": [
                                {"request": {"method": "POST", "url": "Patient"}, "resource": _patient("Batch")},
                                {"request": {"method": "DELETE", "url": f"Patient/{ids[3]}"}},
                            ],
                        },
                    )
                ),
            ]
            reads = []
            for _ in range(10):  # the loop answers reads while every write waits for the lock
                read = await asyncio.wait_for(http.get(f"/fhir/Patient/{ids[0]}"), 30)
                reads.append(read.status_code)
            assert not any(w.done() for w in writes), "a write finished while another process held the lock"
            release.set()
            return reads, [await asyncio.wait_for(w, 60) for w in writes]

    try:
        # on the app's own event loop (the client's portal): its group committer serves one loop,
        # and the app's workers (audit flusher, subscription matcher) may be waiting on it for
        # the lock too; from a loop of its own a write would be refused, not queued
        assert client.portal is not None
        reads, answers = client.portal.call(main)
    finally:
        release.set()
        holder.join()
        other.dispose()
    assert reads == [200] * 10
    assert [a.status_code for a in answers] == [200, 200, 204, 201, 200]
    assert [e["response"]["status"][:3] for e in answers[4].json()["entry"]] == ["201", "204"]
    assert client.get(f"/fhir/Patient/{ids[0]}").json()["name"][0]["family"] == "Baru"
    assert client.get(f"/fhir/Patient/{ids[1]}").json()["gender"] == "other"
    assert client.get(f"/fhir/Patient/{ids[2]}").status_code == 410


def test_a_writes_audit_event_commits_with_it_and_names_what_it_wrote(tmp_path):
    """No buffered flush happens here (hourly): every write's event is there as soon as it answered."""
    from fastapi.testclient import TestClient

    from fhir_server.app import create_app
    from fhir_server.config import Settings

    url = f"sqlite:///{tmp_path / 'fhir.sqlite3'}"
    headers = {**FHIR_JSON, "User-Agent": "SIMRS/1.0", "X-Request-Id": "req-7"}
    with TestClient(create_app(Settings(database_url=url, audit_flush_interval=3600))) as c:
        pid = c.post("/fhir/Patient", json=_patient("Audit"), headers=headers).json()["id"]
        assert c.put(f"/fhir/Patient?_id={pid}", json=_patient("Kondisi"), headers=headers).status_code == 200
        c.post(
            "/fhir",
            headers=headers,
            json={"resourceType": "Bundle", "type": "batch", "entry": [{"request": {"method": "DELETE", "url": f"Patient/{pid}"}}]},
        )
        assert c.get(f"/fhir/Patient/{pid}").status_code == 410  # a read: only queued, not written yet
        rows = _audit_rows(url)
    # after shutdown (the queue flushed): still one event per write, and the queued ones of the
    # batch request and the read
    after = _audit_rows(url)
    assert rows == [
        ("create", 201, "Patient", pid, "SIMRS/1.0", "req-7"),
        ("update", 200, "Patient", pid, "SIMRS/1.0", "req-7"),
        ("delete", 204, "Patient", pid, "SIMRS/1.0", "req-7"),
    ]
    assert after[:3] == rows
    assert sorted(r[0] for r in after[3:]) == ["read", "transaction"]


def _audit_rows(url: str) -> list[tuple]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            sql = "SELECT interaction, status, res_type, res_id, user_agent, request_id FROM audit_events ORDER BY pk"
            return [tuple(r) for r in conn.execute(sa.text(sql))]
    finally:
        engine.dispose()
