"""Concurrent writers never lose an update and never duplicate a version."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from fhir_server.errors import FhirError
from fhir_server.service.resources import ResourceService
from fhir_server.storage.db import Database
from fhir_server.storage.tables import resource_versions

PATIENT = {"resourceType": "Patient", "gender": "female"}


@pytest.fixture
def service(client):
    return client.app.state.fhir.resources


def _versions(db: Database, res_id: str) -> list[int]:
    with db.read() as conn:
        return sorted(conn.execute(sa.select(resource_versions.c.version).where(resource_versions.c.res_id == res_id)).scalars())


def test_parallel_updates_each_get_their_own_version(service: ResourceService):
    pid = service.create("Patient", PATIENT).stored.res_id

    def bump(n: int) -> int:
        return service.update("Patient", pid, {**PATIENT, "id": pid, "birthDate": f"2000-01-{n + 1:02d}"}).stored.version

    with ThreadPoolExecutor(max_workers=10) as pool:
        got = list(pool.map(bump, range(20)))
    assert sorted(got) == list(range(2, 22))
    assert _versions(service.db, pid) == list(range(1, 22))


def test_parallel_updates_with_the_same_if_match_one_wins(service: ResourceService):
    pid = service.create("Patient", PATIENT).stored.res_id

    def attempt(n: int) -> int:
        try:
            service.update("Patient", pid, {**PATIENT, "id": pid, "birthDate": f"2000-01-{n + 1:02d}"}, 'W/"1"')
            return 200
        except FhirError as exc:
            return exc.status

    with ThreadPoolExecutor(max_workers=10) as pool:
        statuses = list(pool.map(attempt, range(20)))
    assert statuses.count(200) == 1
    assert set(statuses) <= {200, 412}
    assert _versions(service.db, pid) == [1, 2]


def test_parallel_update_as_create_of_one_id_makes_one_resource(service: ResourceService):
    def attempt(n: int) -> int:
        return service.update("Patient", "same-id", {**PATIENT, "id": "same-id", "birthDate": f"2000-01-{n + 1:02d}"}).stored.version

    with ThreadPoolExecutor(max_workers=10) as pool:
        got = list(pool.map(attempt, range(10)))
    assert sorted(got) == list(range(1, 11))
    assert _versions(service.db, "same-id") == list(range(1, 11))
