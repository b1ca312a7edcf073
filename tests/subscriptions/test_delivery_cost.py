"""What a delivery costs and what wakes the worker, counted rather than timed (both backends).

* Write transactions: a delivered event costs two (matched + claimed in one, sent + recorded in
  the other), and a burst of events waiting together costs the same two: they go in one
  notification (up to ``backport-max-count``; the lease is kept from one to the next).
* Wake-up: a worker that would poll only once an hour still delivers at once, because a commit
  in its process wakes it (and, on PostgreSQL, a commit in any other process through NOTIFY).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhir_server.app import create_app
from fhir_server.state import ServerState, build_state
from fhir_server.subscriptions.setup import new_worker
from fhir_server.subscriptions.spec import MAX_COUNT
from tests.conftest import BACKENDS, database
from tests.subscriptions.conftest import JSON, create, drain, patient, settings, topic_subscription
from tests.subscriptions.receiver import Receiver, event_numbers, status_of
from tests.waiting import async_wait_until


@pytest.fixture(scope="module", params=BACKENDS)
def quiet_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, str]]:
    """An app without a subscription worker (the tests drive their own) and its database URL."""
    with database(request.param, tmp_path_factory.mktemp("costdb")) as url:
        app = create_app(settings(url, subscription_worker=False))
        with TestClient(app) as client:
            yield client, url


@contextmanager
def counted_writes(state: ServerState) -> Iterator[Callable[[], int]]:
    """Count the write transactions of ``state``'s database (every one goes through ``Database.write``)."""
    db = state.db
    original = db.write
    count = 0

    def write(*args: Any, **kwargs: Any) -> Any:
        nonlocal count
        count += 1
        return original(*args, **kwargs)

    db.write = write  # type: ignore[method-assign]
    try:
        yield lambda: count
    finally:
        del db.write


def test_a_delivered_event_costs_two_write_transactions_and_a_burst_the_same(quiet_url):
    client, url = quiet_url
    receiver = Receiver().start()
    capped = Receiver().start()
    state = build_state(settings(url))
    try:
        family = f"Cost{id(receiver)}"
        client.post("/fhir/Subscription", json=_on_family(receiver.url, family), headers=JSON)
        max_two = topic_subscription(
            capped.url, "Patient", "create", filters=[f"family:exact={family}Capped"], extension=[{"url": MAX_COUNT, "valuePositiveInt": 2}]
        )
        client.post("/fhir/Subscription", json=max_two, headers=JSON)

        async def run() -> None:
            worker = new_worker(state, owner="cost")  # never started: its rounds are driven here
            try:
                await drain(worker)  # handshakes, activation
                assert len(receiver.of_type("handshake")) == 1 and len(capped.of_type("handshake")) == 1
                with counted_writes(state) as writes:
                    client.post("/fhir/Patient", json=patient(family), headers=JSON)
                    await drain(worker)
                    assert event_numbers(receiver) == [1]
                    assert writes() == 2  # matched and claimed; sent and recorded

                with counted_writes(state) as writes:
                    for _ in range(5):
                        client.post("/fhir/Patient", json=patient(family), headers=JSON)
                    await drain(worker)
                    assert event_numbers(receiver) == [1, 2, 3, 4, 5, 6]
                    assert len(receiver.of_type("event-notification")) == 2  # the five waited together: one notification
                    assert writes() == 2

                with counted_writes(state) as writes:
                    for _ in range(5):
                        client.post("/fhir/Patient", json=patient(f"{family}Capped"), headers=JSON)
                    await drain(worker)
                    batches = [[int(e["event-number"]) for e in status_of(b)["events"]] for b in capped.of_type("event-notification")]
                    assert batches == [[1, 2], [3, 4], [5]]  # max-count 2, in order
                    assert writes() == 1 + 3  # one match; three notifications, the lease kept between them
            finally:
                await worker.stop()

        asyncio.run(run())
    finally:
        receiver.stop()
        capped.stop()
        state.db.dispose()


def _on_family(url: str, family: str) -> dict[str, Any]:
    return topic_subscription(url, "Patient", "create", filters=[f"family:exact={family}"])


def _create_patient(state: ServerState, family: str) -> Any:
    return create(state, "Patient", patient(family))


def test_a_commit_in_the_process_wakes_the_worker_without_polling(quiet_url):
    client, url = quiet_url
    receiver = Receiver().start()
    state = build_state(settings(url, subscription_poll_interval=3600.0))
    try:
        family = f"Wake{id(receiver)}"
        sub = client.post("/fhir/Subscription", json=_on_family(receiver.url, family), headers=JSON)
        assert sub.status_code == 201

        async def run() -> None:
            worker = new_worker(state, owner="sleepy")
            await drain(worker)  # the handshake, by hand
            worker.start()
            try:
                for n in range(3):
                    await _create_patient(state, family)
                    # an hour-long poll: only the commit's own signal can wake the worker in time
                    await async_wait_until(lambda n=n: event_numbers(receiver) == list(range(1, n + 2)))
            finally:
                await worker.stop()

        asyncio.run(run())
    finally:
        receiver.stop()
        state.db.dispose()


def test_a_commit_in_another_process_wakes_the_worker_on_postgresql(quiet_url):
    client, url = quiet_url
    if not url.startswith("postgresql"):
        pytest.skip("PostgreSQL NOTIFY: SQLite processes are found by polling (covered by the worker tests)")
    receiver = Receiver().start()
    state = build_state(settings(url, subscription_poll_interval=3600.0))
    other = build_state(settings(url))  # another "process": its own engine, connections and write path
    try:
        family = f"Notify{id(receiver)}"
        client.post("/fhir/Subscription", json=_on_family(receiver.url, family), headers=JSON)

        async def run() -> None:
            worker = new_worker(state, owner="listening")
            await drain(worker)
            worker.start()
            try:
                await asyncio.sleep(0)  # let the listener connect; a change before that is found when it has
                for n in range(3):
                    with other.db.write() as conn:
                        other.resources.create_in(conn, "Patient", patient(family))
                    await async_wait_until(lambda n=n: event_numbers(receiver) == list(range(1, n + 2)))
            finally:
                await worker.stop()

        asyncio.run(run())
    finally:
        receiver.stop()
        state.db.dispose()
        other.db.dispose()
