"""A real server process killed (SIGKILL) while a slow receiver holds a notification, then started
again on the same database: every event arrives at least once and in order (SQLite and
PostgreSQL). The notification that was in flight is sent again after the restart, because its
success was never recorded; nothing committed is lost."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import BACKENDS, database
from tests.e2e.server import ServerProcess
from tests.subscriptions.conftest import patient, topic_subscription
from tests.subscriptions.receiver import Receiver, event_numbers, status_of
from tests.waiting import wait_until

pytestmark = pytest.mark.slow  # two server processes per backend

ENV = {
    "FHIR_SUBSCRIPTION_ALLOWED_NETWORKS": "127.0.0.1/32",
    # a dead process's leases (the change-log cursor, the subscription) run out after this
    "FHIR_SUBSCRIPTION_LEASE_SECONDS": "3",
    "FHIR_SUBSCRIPTION_RETRY_BASE": "0.2",
    "FHIR_SUBSCRIPTION_RETRY_MAX": "1",
}


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database(request.param, tmp_path) as url:
        yield url


def _create_patients(base: str, family: str, count: int) -> None:
    for _ in range(count):
        r = httpx.post(f"{base}/Patient", json=patient(family), headers={"Content-Type": "application/fhir+json"}, timeout=30)
        assert r.status_code == 201, r.text


def test_a_server_killed_mid_delivery_delivers_everything_in_order_after_restart(database_url, tmp_path):
    receiver = Receiver(delay=120.0).start()  # holds every request until released
    try:
        with ServerProcess(database_url, log=tmp_path / "first.log", env=ENV) as first:
            receiver.delay = 0.0
            created = httpx.post(
                f"{first.base}/Subscription",
                json=topic_subscription(receiver.url, "Patient", "create", filters=["family:exact=Crash"]),
                headers={"Content-Type": "application/fhir+json"},
                timeout=30,
            )
            assert created.status_code == 201, created.text
            sub_id = created.json()["id"]
            wait_until(lambda: httpx.get(f"{first.base}/Subscription/{sub_id}", timeout=10).json()["status"] == "active")
            receiver.delay = 120.0  # slow from now on: the next notification is held
            _create_patients(first.base, "Crash", 4)
            wait_until(lambda: receiver.of_type("event-notification"), message="a notification in flight")
            first.kill()  # mid-delivery: the receiver has the request, the server never hears back
        in_flight = event_numbers(receiver)
        assert in_flight and in_flight[0] == 1
        receiver.release.set()  # the held request is answered into a closed connection
        receiver.delay = 0.0

        with ServerProcess(database_url, log=tmp_path / "second.log", env=ENV) as second:
            _create_patients(second.base, "Crash", 3)
            wait_until(lambda: set(event_numbers(receiver)) == set(range(1, 8)), timeout=60, message="events 1..7")
            status = httpx.get(f"{second.base}/Subscription/{sub_id}/$status", timeout=10).json()
            params = status["entry"][0]["resource"]["parameter"]
            assert next(p["valueString"] for p in params if p["name"] == "events-since-subscription-start") == "7"

        numbers = event_numbers(receiver)
        # at least once: the held notification's events came again after the restart
        assert numbers[: len(in_flight)] == in_flight and numbers.count(1) >= 2
        # in order: every notification starts at or before the event after the highest one seen
        first_seen = list(dict.fromkeys(numbers))
        assert first_seen == list(range(1, 8))
        highest = 0
        for bundle_numbers in _per_notification(receiver):
            assert bundle_numbers == list(range(bundle_numbers[0], bundle_numbers[-1] + 1))
            assert bundle_numbers[0] <= highest + 1
            highest = max(highest, bundle_numbers[-1])
    finally:
        receiver.stop()


def _per_notification(receiver: Receiver) -> list[list[int]]:
    return [[int(e["event-number"]) for e in status_of(b)["events"]] for b in receiver.of_type("event-notification")]
