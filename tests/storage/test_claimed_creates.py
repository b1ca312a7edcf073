"""The PUTs of a transaction Bundle that create claim their keys with the prefetch
(repository.prefetched_current) instead of one INSERT each. PostgreSQL: a concurrent creator of
the same id still ends as the update it was before: nothing lost, no duplicate, no placeholder
left. SQLite: a claim is a primary key, and no other insert of the transaction takes it.
"""

from __future__ import annotations

import threading
import time
import uuid

import orjson
import pytest

from fhir_server.storage import repository as repo
from tests.conftest import BACKENDS

# concurrent claims are PostgreSQL's (SQLite's writes are in-process, one writer at a time): those
# tests run on the PostgreSQL app only
H = {"Content-Type": "application/fhir+json"}


def _patient(res_id: str, family: str) -> dict:
    return {"resourceType": "Patient", "id": res_id, "name": [{"family": family}]}


@pytest.fixture
def pg(client):
    state = client.app.state.fhir
    assert state.db.dialect == "postgresql"
    return client, state


def _placeholders(state) -> int:
    with state.db.engine.connect() as conn:
        return conn.exec_driver_sql("SELECT count(*) FROM resources WHERE version = 0").scalar_one()


def _transaction(entries: list[dict]) -> bytes:
    return orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries})


def _put(resource: dict) -> dict:
    return {"resource": resource, "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"}}


def test_a_transactions_creates_take_no_statement_each(client, monkeypatch):
    state = client.app.state.fhir
    per_entry: list[str] = []
    real = repo.driver_fetchone

    def counting(conn, sql, params):
        if sql in (repo._INSERT_CURRENT_SQL, repo._INSERT_NUMBERED_SQL, repo._READ_CURRENT_SQL):
            per_entry.append(params[1])
        return real(conn, sql, params)

    monkeypatch.setattr(repo, "driver_fetchone", counting)
    tag = uuid.uuid4().hex[:8]
    ids = [f"claim-{tag}-{n}" for n in range(5)]
    r = client.post("/fhir", content=_transaction([_put(_patient(i, f"Klaim{tag}")) for i in ids]), headers=H)
    assert r.status_code == 200, r.text
    assert [e["response"]["status"] for e in r.json()["entry"]] == ["201 Created"] * 5
    assert per_entry == []
    for i in ids:
        got = client.get(f"/fhir/Patient/{i}")
        assert got.status_code == 200 and got.json()["meta"]["versionId"] == "1"
        history = client.get(f"/fhir/Patient/{i}/_history").json()
        assert [e["request"]["method"] for e in history["entry"]] == ["PUT"]
    found = client.get(f"/fhir/Patient?family=Klaim{tag}&_count=10").json()
    assert sorted(e["resource"]["id"] for e in found["entry"]) == ids
    assert _placeholders(state) == 0


def _keys(state) -> list[int]:
    with state.db.engine.connect() as conn:
        return [row[0] for row in conn.exec_driver_sql("SELECT pk FROM resources ORDER BY pk")]


def test_creates_and_posts_of_one_transaction_each_get_their_own_row(client):
    """POSTs run before PUTs (transaction processing order): on SQLite their rows are inserted at
    once while the PUTs' claimed rows wait, so they must not take a claimed number."""
    state = client.app.state.fhir
    tag = uuid.uuid4().hex[:8]
    client.put(f"/fhir/Patient/old-{tag}", content=orjson.dumps(_patient(f"old-{tag}", "Old")), headers=H)
    entries = [_put(_patient(f"new-{tag}-{n}", f"Baru{tag}")) for n in range(3)]
    entries.insert(
        1, {"resource": {"resourceType": "Patient", "name": [{"family": f"Baru{tag}"}]}, "request": {"method": "POST", "url": "Patient"}}
    )
    entries.append(_put(_patient(f"old-{tag}", f"Baru{tag}")))
    entries.append({"resource": {"resourceType": "Organization", "name": "Posted"}, "request": {"method": "POST", "url": "Organization"}})
    r = client.post("/fhir", content=_transaction(entries), headers=H)
    assert r.status_code == 200, r.text
    statuses = [e["response"]["status"] for e in r.json()["entry"]]
    assert statuses == ["201 Created"] * 4 + ["200 OK", "201 Created"]
    keys = _keys(state)
    assert len(keys) == len(set(keys)) == 6
    found = client.get(f"/fhir/Patient?family=Baru{tag}&_count=10").json()
    assert found["total"] == 5
    assert client.get("/fhir/Organization?name=Posted").json()["total"] == 1
    # a later create outside any Bundle takes a number of its own too
    assert client.post("/fhir/Patient", content=orjson.dumps({"resourceType": "Patient"}), headers=H).status_code == 201
    assert len(set(_keys(state))) == 7


def test_a_claim_left_unused_leaves_no_row_and_no_collision(client):
    state = client.app.state.fhir
    tag = uuid.uuid4().hex[:8]
    x, y = f"spare-{tag}-x", f"spare-{tag}-y"
    with state.db.write() as conn:
        with repo.prefetched_current(conn, [("Patient", x), ("Patient", y)]):
            state.resources.update_in(conn, "Patient", x, _patient(x, "Used"))
        # after the block, in the same transaction: a create whose row SQLite numbers itself
        after = state.resources.create_in(conn, "Patient", {"resourceType": "Patient"})
    assert client.get(f"/fhir/Patient/{x}").status_code == 200
    assert client.get(f"/fhir/Patient/{after.stored.res_id}").status_code == 200
    assert client.get(f"/fhir/Patient/{y}").status_code == 404  # not 410: it never existed
    assert _placeholders(state) == 0
    assert len(_keys(state)) == 2


def _run(target, *args):
    errors: list[BaseException] = []

    def body():
        try:
            target(*args)
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            errors.append(exc)

    thread = threading.Thread(target=body)
    thread.start()
    return thread, errors


def _held_then_released(holder, waiter) -> None:
    """``holder(held, release)`` runs first and sets ``held`` once it holds what ``waiter()``
    needs; ``waiter`` must then wait until ``release`` lets the holder commit."""
    held, release = threading.Event(), threading.Event()
    first, first_errors = _run(holder, held, release)
    assert held.wait(10)
    second, second_errors = _run(waiter)
    time.sleep(0.5)
    assert second.is_alive()  # waiting for the holder's transaction
    release.set()
    first.join(10)
    second.join(10)
    assert not first_errors and not second_errors, (first_errors, second_errors)


def _bundle_writes(state, x: str, y: str, results: dict, held=None, release=None) -> None:
    """A transaction Bundle's PUTs of x and y as ``_transaction_in`` runs them (prefetch, then each entry)."""
    with state.db.write() as conn, repo.prefetched_current(conn, [("Patient", x), ("Patient", y)]):
        if held is not None:
            held.set()
            release.wait(10)
        results["bx"] = state.resources.update_in(conn, "Patient", x, _patient(x, "Bundle"))
        results["by"] = state.resources.update_in(conn, "Patient", y, _patient(y, "Bundle"))


@pytest.mark.skipif("postgresql" not in BACKENDS, reason="needs FHIR_TEST_POSTGRES_URL")
@pytest.mark.parametrize("backend_url", ["postgresql"], indirect=True)
def test_a_single_put_of_a_claimed_id_waits_and_becomes_the_update(pg):
    _client, state = pg
    tag = uuid.uuid4().hex[:8]
    x, y = f"race-{tag}-x", f"race-{tag}-y"
    results: dict[str, object] = {}

    def single_side():
        results["single"] = state.resources.update("Patient", x, _patient(x, "Single"))

    _held_then_released(lambda held, release: _bundle_writes(state, x, y, results, held, release), single_side)
    assert results["bx"].status == 201 and results["single"].status == 200  # type: ignore[attr-defined]
    current = repo.read_current(state.db, "Patient", x)
    assert current is not None and current.version == 2 and b"Single" in current.body
    assert repo.read_current(state.db, "Patient", y).version == 1
    assert _placeholders(state) == 0


@pytest.mark.skipif("postgresql" not in BACKENDS, reason="needs FHIR_TEST_POSTGRES_URL")
@pytest.mark.parametrize("backend_url", ["postgresql"], indirect=True)
def test_a_bundle_whose_id_was_created_meanwhile_updates_it(pg):
    _client, state = pg
    tag = uuid.uuid4().hex[:8]
    x, y = f"race-{tag}-x", f"race-{tag}-y"
    results: dict[str, object] = {}

    def single_side(held, release):
        with state.db.write() as conn:
            results["single"] = state.resources.update_in(conn, "Patient", x, _patient(x, "Single"))
            held.set()
            release.wait(10)

    # the Bundle's claim of x waits for the uncommitted create
    _held_then_released(single_side, lambda: _bundle_writes(state, x, y, results))
    assert results["single"].status == 201  # type: ignore[attr-defined]
    assert results["bx"].status == 200 and results["by"].status == 201  # type: ignore[attr-defined]
    current = repo.read_current(state.db, "Patient", x)
    assert current is not None and current.version == 2 and b"Bundle" in current.body
    assert _placeholders(state) == 0


@pytest.mark.skipif("postgresql" not in BACKENDS, reason="needs FHIR_TEST_POSTGRES_URL")
@pytest.mark.parametrize("backend_url", ["postgresql"], indirect=True)
def test_a_failed_transaction_leaves_no_claim(pg):
    client, state = pg
    tag = uuid.uuid4().hex[:8]
    good, bad = f"fail-{tag}-a", f"fail-{tag}-b"
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": _patient(good, "Ok"), "request": {"method": "PUT", "url": f"Patient/{good}"}},
            {"resource": {**_patient(bad, "Bad"), "gender": "nope"}, "request": {"method": "PUT", "url": f"Patient/{bad}"}},
        ],
    }
    r = client.post("/fhir", content=orjson.dumps(bundle), headers=H)
    assert r.status_code in (400, 422), r.text
    assert client.get(f"/fhir/Patient/{good}").status_code == 404
    assert _placeholders(state) == 0


@pytest.mark.skipif("postgresql" not in BACKENDS, reason="needs FHIR_TEST_POSTGRES_URL")
@pytest.mark.parametrize("backend_url", ["postgresql"], indirect=True)
def test_parallel_transactions_creating_the_same_ids_all_land(pg):
    """Six transaction Bundles PUT the same four new ids of two types, in different entry
    orders, at once: claims and row locks are taken in one order (type, then id), so they wait
    for each other instead of deadlocking; one creates each id and the others update it."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from fhir_server.service.access import OPEN
    from fhir_server.service.pipeline import Interaction, Pipeline
    from fhir_server.storage.group_commit import BlockingWrites

    _client, state = pg
    tag = uuid.uuid4().hex[:8]
    keys = [("Patient", f"par-{tag}-p{n}") for n in (1, 2)] + [("Organization", f"par-{tag}-o{n}") for n in (1, 2)]
    pipeline = Pipeline(state.services, BlockingWrites(state.db), audit_writes=False)

    def entry(res_type: str, res_id: str, n: int) -> dict:
        body = _patient(res_id, f"P{n}") if res_type == "Patient" else {"resourceType": "Organization", "id": res_id, "name": f"O{n}"}
        return {"resource": body, "request": {"method": "PUT", "url": f"{res_type}/{res_id}"}}

    def attempt(n: int) -> list[str]:
        order = keys if n % 2 == 0 else list(reversed(keys))
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [entry(t, i, n) for t, i in order]}
        answer = asyncio.run(pipeline.handle(Interaction("transaction", "http://testserver/fhir", OPEN, body=bundle)))
        return [e["response"]["status"] for e in orjson.loads(answer.body)["entry"]]

    with ThreadPoolExecutor(max_workers=6) as pool:
        outcomes = list(pool.map(attempt, range(6)))
    created = [s for statuses in outcomes for s in statuses if s.startswith("201")]
    assert len(created) == 4  # each id created once, every other write an update
    for res_type, res_id in keys:
        assert repo.read_current(state.db, res_type, res_id).version == 6
    assert _placeholders(state) == 0
