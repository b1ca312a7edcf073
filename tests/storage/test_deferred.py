"""Deferred version and index rows (storage/deferred.py): written with one executemany per
table at the commit, yet visible to every read inside the transaction and never leaked by a
rollback. SQLite and PostgreSQL (the ``client`` fixture)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from fhir_server.errors import FhirError
from fhir_server.search.engine import run_search
from fhir_server.search.extract import extract_index
from fhir_server.service.resources import ResourceService
from fhir_server.storage import deferred
from fhir_server.storage import repository as repo
from fhir_server.storage.index_tables import INDEX_TABLES
from fhir_server.storage.search_index import replace_index
from fhir_server.storage.tables import resource_versions

NIK = "https://fhir.kemkes.go.id/id/nik"


@pytest.fixture
def service(client) -> ResourceService:
    return client.app.state.fhir.resources


def _patient(nik: str, family: str = "Lubis") -> dict:
    return {"resourceType": "Patient", "identifier": [{"system": NIK, "value": nik}], "name": [{"family": family}]}


def _ids(conn: sa.Connection, params: list[tuple[str, str]]) -> list[str]:
    return [i for _, i, _ in run_search(conn, "Patient", params, strict=True, default_count=50, max_count=50).matches]


def _index_rows(db, pk: int) -> int:
    with db.read() as conn:
        return sum(
            conn.execute(sa.select(sa.func.count()).select_from(t).where(t.c.resource_pk == pk)).scalar_one() for t in INDEX_TABLES.values()
        )


def _version_count(db) -> int:
    with db.read() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(resource_versions)).scalar_one()


def test_rows_are_pending_until_commit_and_written_then(service: ResourceService):
    with service.db.write() as conn:
        result = service.create_in(conn, "Patient", _patient("1"))
        assert deferred.pending(conn)  # index and version rows wait for the commit
    assert _index_rows(service.db, result.pk) == extract_index({**_patient("1"), "id": result.stored.res_id, "meta": {}}).count()
    assert _version_count(service.db) == 1


def test_a_search_in_the_same_transaction_sees_pending_rows(service: ResourceService):
    with service.db.write() as conn:
        first = service.create_in(conn, "Patient", _patient("11", "Nasution")).stored.res_id
        second = service.create_in(conn, "Patient", _patient("12", "Nasution")).stored.res_id
        assert sorted(_ids(conn, [("family", "nasution")])) == sorted([first, second])
        assert _ids(conn, [("identifier", f"{NIK}|12")]) == [second]
        assert not deferred.pending(conn)  # the search flushed them
        third = service.create_in(conn, "Patient", _patient("13", "Nasution")).stored.res_id
        assert len(_ids(conn, [("family", "nasution")])) == 3
    with service.db.read() as conn:
        assert third in _ids(conn, [("family", "nasution")])


def test_history_inside_the_transaction_sees_pending_versions(service: ResourceService):
    with service.db.write() as conn:
        res_id = service.create_in(conn, "Patient", _patient("2")).stored.res_id
        assert repo.get_version(conn, "Patient", res_id, 1) is not None


def test_update_and_delete_of_a_resource_written_in_the_same_transaction(service: ResourceService):
    with service.db.write() as conn:
        created = service.create_in(conn, "Patient", _patient("3", "Siregar"))
        res_id = created.stored.res_id
        service.update_in(conn, "Patient", res_id, {**_patient("3", "Harahap"), "id": res_id})
        assert _ids(conn, [("family", "siregar")]) == []
        assert _ids(conn, [("family", "harahap")]) == [res_id]
        other = service.create_in(conn, "Patient", _patient("4", "Purba"))
        service.delete_in(conn, "Patient", other.stored.res_id)
    with service.db.read() as conn:
        assert _ids(conn, [("family", "harahap")]) == [res_id]
        assert _ids(conn, [("family", "siregar")]) == []
        assert _ids(conn, [("family", "purba")]) == []
    assert _index_rows(service.db, other.pk) == 0
    assert _version_count(service.db) == 4


def test_a_failed_transaction_leaves_nothing_behind_and_nothing_pending(service: ResourceService):
    db = service.db
    with pytest.raises(FhirError), db.write() as conn:
        pk = service.create_in(conn, "Patient", _patient("5")).pk
        raise FhirError.of(400, "invalid", "stop")
    assert _index_rows(db, pk) == 0
    assert _version_count(db) == 0
    # the pooled connection carries nothing into the next transaction
    with db.write() as conn:
        assert deferred.pending(conn) is not None and not deferred.pending(conn)
        service.create_in(conn, "Patient", _patient("6"))
    assert _version_count(db) == 1
    with db.read() as conn:
        assert _ids(conn, [("identifier", f"{NIK}|5")]) == []
        assert len(_ids(conn, [("identifier", f"{NIK}|6")])) == 1


def test_without_a_write_transaction_rows_are_written_at_once(service: ResourceService):
    created = service.create("Patient", _patient("7"))
    with service.db.engine.begin() as conn:  # a bare transaction, as reindex uses
        assert deferred.pending(conn) is None
        replace_index(conn, created.pk, extract_index({**_patient("7", "Tanjung"), "id": created.stored.res_id}))
        assert _ids(conn, [("family", "tanjung")]) == [created.stored.res_id]


def test_many_rows_of_many_resources_in_one_transaction(service: ResourceService):
    with service.db.write() as conn:
        pks = [service.create_in(conn, "Patient", _patient(str(100 + i), f"Halim{i}")).pk for i in range(30)]
    for pk in pks:
        assert _index_rows(service.db, pk) > 0
    with service.db.read() as conn:
        assert len(_ids(conn, [("family", "halim")])) == 30
    assert _version_count(service.db) == 30


def test_reserved_keys_defer_new_resource_rows(service: ResourceService):
    """PostgreSQL: new rows of a Bundle take reserved keys and go in with the deferred rows;
    SQLite: reserving is a no-op. Either way reads, updates and conditional guards see them."""
    db = service.db
    with db.write() as conn:
        repo.reserve_pks(conn, 3)
        reserved = list(deferred.pending(conn).reserved_pks)
        assert len(reserved) == (3 if db.dialect == "postgresql" else 0)
        a = service.create_in(conn, "Patient", _patient("21", "Sinaga"))
        if reserved:
            assert a.pk in reserved
        assert repo.get_current(conn, "Patient", a.stored.res_id).pk == a.pk  # flushed by the read
        b = service.create_in(conn, "Patient", _patient("22", "Sinaga"))
        # a raw UPDATE of a row that may still be pending
        assert repo.replace_current(conn, b.pk, 1, b.stored.body, b.stored.updated_us + 1, deleted=False)
        repo.add_version(conn, "Patient", b.stored.res_id, 2, b.stored.updated_us + 1, "PUT", b.stored.body)
        assert sorted(_ids(conn, [("family", "sinaga")])) == sorted([a.stored.res_id, b.stored.res_id])
    with db.read() as conn:
        assert repo.get_current(conn, "Patient", b.stored.res_id).version == 2
    assert _version_count(db) == 3


def test_values_that_need_escaping_survive_the_bulk_write(service: ResourceService):
    """COPY on PostgreSQL escapes tabs, newlines, backslashes and non-ASCII like INSERT did."""
    tricky = "Tab\there\nnew line \\ back\\\\slash \u00e9\u4e2d \N{GRINNING FACE} 'q' \"dq\" |pipe"
    resource = {**_patient("31", "Nasution"), "name": [{"family": "Nasution", "text": tricky}], "address": [{"text": "\\N", "city": "\\."}]}
    with service.db.write() as conn:
        repo.reserve_pks(conn, 1)
        created = service.create_in(conn, "Patient", resource)
    stored = service.read("Patient", created.stored.res_id)
    assert stored.body == created.stored.body
    with service.db.read() as conn:
        assert _ids(conn, [("name", "tab here")]) == [created.stored.res_id]
        assert _ids(conn, [("address", "\\N")]) == [created.stored.res_id]
        assert _ids(conn, [("address-city:exact", "\\.")]) == [created.stored.res_id]


def test_after_commit_callbacks_of_a_rolled_back_transaction_never_run(service: ResourceService):
    db = service.db
    ran: list[str] = []
    with pytest.raises(RuntimeError), db.write() as conn:
        conn.info.setdefault("after_commit", []).append(lambda: ran.append("rolled back"))
        raise RuntimeError("stop")
    for _ in range(3):  # whichever pooled connection the next writes get
        with db.write() as conn:
            conn.info.setdefault("after_commit", []).append(lambda: ran.append("committed"))
    assert ran == ["committed"] * 3
