"""A write's AuditEvent and change-log row commit with the write: a server killed right after
answering still has them (reads are audited through the buffered queue, writes are not)."""

from __future__ import annotations

import httpx
import pytest
import sqlalchemy as sa

from tests.conftest import BACKENDS
from tests.e2e.server import ServerProcess

PATIENT = {"resourceType": "Patient", "gender": "female", "name": [{"family": "Aminah"}]}
FHIR_JSON = {"Content-Type": "application/fhir+json"}


@pytest.mark.slow
@pytest.mark.parametrize("fresh_database_url", BACKENDS, indirect=True)
def test_a_server_killed_right_after_a_write_still_has_its_audit_event(fresh_database_url, tmp_path):
    # the buffered audit queue is flushed hourly here: only what the write committed can survive
    # (requests get 60 s, not httpx's default 5: a loaded machine may hold the server up that long)
    server = ServerProcess(fresh_database_url, log=tmp_path / "server.log", env={"FHIR_AUDIT_FLUSH_INTERVAL": "3600"})
    try:
        server.wait_ready()
        created = httpx.post(f"{server.base}/Patient", json=PATIENT, headers=FHIR_JSON, timeout=60)
        assert created.status_code == 201
        pid = created.json()["id"]
        updated = httpx.put(f"{server.base}/Patient/{pid}", json={**PATIENT, "id": pid, "gender": "male"}, headers=FHIR_JSON, timeout=60)
        assert updated.status_code == 200
        bundle = {"resourceType": "Bundle", "type": "batch", "entry": [{"request": {"method": "DELETE", "url": f"Patient/{pid}"}}]}
        deleted = httpx.post(server.base, json=bundle, headers=FHIR_JSON, timeout=60)
        assert deleted.json()["entry"][0]["response"]["status"].startswith("204")
    finally:
        server.kill()

    engine = sa.create_engine(fresh_database_url)
    try:
        with engine.connect() as conn:
            events = conn.execute(
                sa.text("SELECT interaction, status, res_type, res_id FROM audit_events WHERE res_id = :pid ORDER BY recorded_us"),
                {"pid": pid},
            ).all()
            changes = conn.execute(
                sa.text("SELECT res_type, res_id, version, action FROM change_log WHERE res_id = :pid ORDER BY seq"), {"pid": pid}
            ).all()
    finally:
        engine.dispose()
    assert [tuple(e) for e in events] == [
        ("create", 201, "Patient", pid),
        ("update", 200, "Patient", pid),
        ("delete", 204, "Patient", pid),
    ]
    assert [tuple(c) for c in changes] == [
        ("Patient", pid, 1, "create"),
        ("Patient", pid, 2, "update"),
        ("Patient", pid, 3, "delete"),
    ]
