"""repository.get_versions: many versions in a statement per type, exactly those asked for."""

from __future__ import annotations

import pytest

from fhir_server.storage import repository as repo
from tests.conftest import BACKENDS, migrated_database


@pytest.fixture(params=BACKENDS)
def db(request, tmp_path):
    with migrated_database(request.param, tmp_path) as database:
        yield database


def _store(db, res_type: str, res_id: str, versions: int) -> None:
    with db.write() as conn:
        for v in range(1, versions + 1):
            repo.add_version(conn, res_type, res_id, v, 1_000 + v, "PUT", b'{"v": %d}' % v, deleted=False)


def test_exactly_the_versions_asked_for_of_each_type(db):
    _store(db, "Patient", "a", 2)
    _store(db, "Patient", "b", 2)
    _store(db, "Encounter", "a", 1)
    # (a, 2) and (b, 1) exist too: the ids and versions asked for cross, the answer must not
    asked = [("Patient", "a", 1), ("Patient", "b", 2), ("Encounter", "a", 1), ("Patient", "c", 1), ("Encounter", "a", 2)]
    with db.read() as conn:
        found = repo.get_versions(conn, asked)
    assert sorted(found) == [("Encounter", "a", 1), ("Patient", "a", 1), ("Patient", "b", 2)]
    for key, row in found.items():
        assert (row.res_type, row.res_id, row.version) == key
        assert repo.as_bytes(row.body) == b'{"v": %d}' % key[2]
    with db.read() as conn:
        assert repo.get_versions(conn, []) == {}
