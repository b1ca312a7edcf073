"""Terminology resources stored through another worker (another process, perhaps another
machine) are what this worker's terminology answers use: the database is the source of truth
(storage/stored_terminology.py). Before, each process kept its own registry, updated only by its own
writes: another worker's update or delete was never seen, and a CodeSystem stored elsewhere was
unknown to ``:below``, to the expansion of a value set including it and to TerminologyCapabilities."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

from fastapi.testclient import TestClient

from fhir_server.app import create_app
from fhir_server.config import Settings
from tests.conftest import database, match_ids, put_resource

# another worker: a process of its own on the same database, writing through the services
_WORKER = """
import json, sys
from fhir_server.config import Settings
from fhir_server.state import build_state
state = build_state(Settings(database_url=sys.argv[1]), blocking_writes=True)
for action, res_type, res_id, resource in json.loads(sys.argv[2]):
    if action == "put":
        state.resources.update(res_type, res_id, resource)
    else:
        state.resources.delete(res_type, res_id)
"""


def _in_another_worker(client: TestClient, *actions: tuple[str, str, str, dict | None]) -> None:
    url = client.app.state.fhir.settings.database_url
    done = subprocess.run(
        [sys.executable, "-c", _WORKER, url, json.dumps(actions)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parents[2],
    )
    assert done.returncode == 0, done.stderr


def _value_set(vs_id: str, url: str, *codes: str, system: str = "http://example.org/cs/colours") -> dict:
    include = {"system": system, **({"concept": [{"code": c} for c in codes]} if codes else {})}
    return {"resourceType": "ValueSet", "id": vs_id, "url": url, "status": "active", "compose": {"include": [include]}}


def _expanded(client: TestClient, url: str) -> list[str] | int:
    r = client.get("/fhir/ValueSet/$expand", params={"url": url})
    return sorted(c["code"] for c in r.json()["expansion"].get("contains", [])) if r.status_code == 200 else r.status_code


def test_a_value_set_another_worker_updates_and_deletes_is_expanded_as_stored(client):
    url = f"http://example.org/vs/{uuid.uuid4().hex}"
    put_resource(client, _value_set("vs-workers", url, "red"))
    assert _expanded(client, url) == ["red"]
    _in_another_worker(client, ("put", "ValueSet", "vs-workers", _value_set("vs-workers", url, "blue", "green")))
    assert _expanded(client, url) == ["blue", "green"]
    _in_another_worker(client, ("delete", "ValueSet", "vs-workers", None))
    assert _expanded(client, url) == 404


def test_a_code_system_another_worker_stores_serves_hierarchy_expansion_and_capabilities(client):
    system = f"http://example.org/cs/{uuid.uuid4().hex}"
    code_system = {
        "resourceType": "CodeSystem",
        "id": "cs-workers",
        "url": system,
        "status": "active",
        "content": "complete",
        "concept": [{"code": "infeksi", "concept": [{"code": "tbc"}, {"code": "dbd"}]}, {"code": "cedera"}],
    }
    _in_another_worker(client, ("put", "CodeSystem", "cs-workers", code_system))
    vs_url = f"http://example.org/vs/{uuid.uuid4().hex}"
    put_resource(client, _value_set("vs-all-of-cs", vs_url, system=system))
    put_resource(client, {"resourceType": "Patient", "id": "x"})
    for i, code in enumerate(("tbc", "cedera")):
        put_resource(
            client,
            {
                "resourceType": "Condition",
                "id": f"cond-{i}",
                "subject": {"reference": "Patient/x"},
                "code": {"coding": [{"system": system, "code": code}]},
            },
        )

    assert _expanded(client, vs_url) == ["cedera", "dbd", "infeksi", "tbc"]
    assert match_ids(client, f"/fhir/Condition?code:below={system}|infeksi") == ["cond-0"]
    listed = client.get("/fhir/metadata", params={"mode": "terminology"}).json()["codeSystem"]
    assert system in {cs["uri"] for cs in listed}


def test_a_value_set_one_database_stores_is_not_seeded_into_another(client, tmp_path):
    url = f"http://example.org/vs/{uuid.uuid4().hex}"
    put_resource(client, _value_set("vs-not-packaged", url, "red"))
    assert _expanded(client, url) == ["red"]
    with database("sqlite", tmp_path) as other_url, TestClient(create_app(Settings(database_url=other_url))) as other:
        assert other.get("/fhir/ValueSet", params={"url": url}).json().get("total") == 0
        assert _expanded(other, url) == 404
