"""The real server process: the README's run command, several workers, and crash safety."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import sqlalchemy as sa

from tests.conftest import BACKENDS
from tests.e2e.server import ServerProcess

TAG = {"system": "https://fhir-server.id/test", "code": "crash"}
PATIENT = {"resourceType": "Patient", "gender": "female", "name": [{"family": "Aminah"}]}


@pytest.mark.parametrize("fresh_database_url", BACKENDS, indirect=True)
def test_serve_answers_metadata_and_crud(fresh_database_url, tmp_path):
    with ServerProcess(fresh_database_url, log=tmp_path / "server.log") as server:
        meta = httpx.get(f"{server.base}/metadata")
        assert meta.status_code == 200 and meta.json()["fhirVersion"] == "4.0.1"
        created = httpx.post(f"{server.base}/Patient", json=PATIENT, headers={"Content-Type": "application/fhir+json"})
        assert created.status_code == 201
        assert httpx.get(f"{server.base}/Patient/{created.json()['id']}").json()["name"][0]["family"] == "Aminah"


@pytest.mark.parametrize("fresh_database_url", BACKENDS, indirect=True)
def test_two_workers_share_the_data_without_conflicts(fresh_database_url, tmp_path):
    with ServerProcess(fresh_database_url, workers=2, log=tmp_path / "server.log") as server:
        with httpx.Client(timeout=30) as http:
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
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": f"urn:uuid:00000000-0000-4000-8000-{i:012d}",
         "resource": {**PATIENT, "meta": {"tag": [TAG]}, "birthDate": f"1990-01-{i % 28 + 1:02d}"},
         "request": {"method": "POST", "url": "Patient"}} for i in range(n)]}


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

    sender = threading.Thread(target=send)
    sender.start()
    time.sleep(1.5)  # the server is validating and inserting by now; 12,000 entries take several seconds
    server.kill()
    sender.join(30)
    assert "error" in outcome, f"the transaction finished before the kill ({outcome}); make it larger"

    with ServerProcess(fresh_database_url, log=tmp_path / "restart.log", env=big) as again:
        tagged = httpx.get(f"{again.base}/Patient", params={"_tag": f"{TAG['system']}|{TAG['code']}", "_summary": "count"})
        assert tagged.status_code == 200 and tagged.json()["total"] == 0
        assert httpx.get(f"{again.base}/Patient/_history").json()["entry"] == []
        assert httpx.post(f"{again.base}/Patient", json=PATIENT).status_code == 201
    if fresh_database_url.startswith("sqlite"):
        engine = sa.create_engine(fresh_database_url)
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
        engine.dispose()
