"""What a receiver's answer does (``Retry-After`` on 429 and 503, ``410 Gone``) and
``Subscription.end``, with a real receiver on SQLite and PostgreSQL. Back-off is checked in the
database (when the next attempt is due), never by timing the attempts."""

from __future__ import annotations

import email.utils

from fhir_server.storage import changelog, claims
from fhir_server.storage.work_tables import work_partitions
from fhir_server.subscriptions import store
from fhir_server.subscriptions.delivery import retry_after
from fhir_server.timeutil import now_us, to_instant
from tests.subscriptions.conftest import JSON, patient, topic_subscription
from tests.subscriptions.receiver import event_numbers, status_of
from tests.waiting import wait_until


def _active(client, sub_id: str) -> None:
    wait_until(lambda: client.get(f"/fhir/Subscription/{sub_id}").json()["status"] == "active", message="active")


def _attempts(client, sub_id: str) -> list[dict]:
    with client.app.state.fhir.db.read() as conn:
        return store.attempts(conn, sub_id, 50)


def _partition(client, sub_id: str) -> dict:
    with client.app.state.fhir.db.read() as conn:
        return claims.partition_state(conn, store.REST_QUEUE, sub_id) or {}


def test_retry_after_values():
    assert retry_after("120") == 120.0
    assert retry_after(" 0 ") == 0.0
    assert retry_after(email.utils.formatdate(1_000_060, usegmt=True), now=1_000_000) == 60.0
    assert retry_after(email.utils.formatdate(999_000, usegmt=True), now=1_000_000) == 0.0  # in the past: now
    assert retry_after(None) is None and retry_after("soon") is None and retry_after("-5") is None


def test_retry_after_on_429_and_503_is_waited_for(subs, receiver):
    sub = subs.post("/fhir/Subscription", json=topic_subscription(receiver.url, "Patient", "create"), headers=JSON).json()["id"]
    _active(subs, sub)
    for status, header, at_least in (
        (429, "30", 30),
        (503, email.utils.formatdate(now_us() / 1e6 + 120, usegmt=True), 110),
    ):
        receiver.status, receiver.answer_headers = status, {"Retry-After": header}
        before = len(_attempts(subs, sub))
        if before == 1:  # the handshake
            subs.post("/fhir/Patient", json=patient("Later"), headers=JSON)
        else:  # the first case is backing off: bring the attempt forward, as an operator's replay would
            with subs.app.state.fhir.db.write() as conn:
                conn.execute(work_partitions.update().where(work_partitions.c.partition == sub).values(retry_at_us=now_us()))
        wait_until(lambda before=before: len(_attempts(subs, sub)) == before + 1, message=f"an attempt answered {status}")
        last = _attempts(subs, sub)[0]
        assert last["http_status"] == status and "Retry-After" in (last["error"] or "")
        part = wait_until(lambda: _partition(subs, sub) if _partition(subs, sub).get("retry_at_us") else None)
        # the test settings back off at most 0.2 s: only the receiver's Retry-After makes it this long
        assert part["retry_at_us"] - last["started_us"] >= at_least * 1_000_000
    assert subs.get(f"/fhir/Subscription/{sub}").json()["status"] == "active"


def test_410_gone_puts_the_subscription_in_error_at_once(subs, receiver):
    sub = subs.post("/fhir/Subscription", json=topic_subscription(receiver.url, "Patient", "create"), headers=JSON).json()["id"]
    _active(subs, sub)
    receiver.status = 410
    subs.post("/fhir/Patient", json=patient("Gone"), headers=JSON)
    wait_until(lambda: subs.get(f"/fhir/Subscription/{sub}").json()["status"] == "error", message="error")
    current = subs.get(f"/fhir/Subscription/{sub}").json()
    assert "410" in current["error"]
    attempts = [a for a in _attempts(subs, sub) if a["kind"] == "event-notification"]
    assert len(attempts) == 1 and attempts[0]["http_status"] == 410  # max_failures is 4: one 410 was enough
    assert _partition(subs, sub)["paused"]


def test_subscription_end_turns_it_off_with_nothing_to_deliver(subs, receiver):
    resource = topic_subscription(receiver.url, "Patient", "create")
    resource["end"] = to_instant(now_us() + 1_500_000)
    sub = subs.post("/fhir/Subscription", json=resource, headers=JSON).json()["id"]
    _active(subs, sub)
    # no events, no heartbeats: only the end itself can wake the worker for it
    wait_until(lambda: subs.get(f"/fhir/Subscription/{sub}").json()["status"] == "off", message="off at its end")
    status = subs.get(f"/fhir/Subscription/{sub}/$status").json()
    assert status_of({"entry": status["entry"]})["status"] == "off"
    subs.post("/fhir/Patient", json=patient("AfterEnd"), headers=JSON)
    subs.post("/fhir/Patient", json=patient("AfterEnd"), headers=JSON)
    wait_until(lambda: _events_seen(subs) >= 2, message="the later changes matched")
    assert event_numbers(receiver) == []


def _events_seen(client) -> int:
    """How far the matcher got (its cursor), to know the changes after the end were looked at."""
    with client.app.state.fhir.db.read() as conn:
        position = claims.cursor_position(conn, store.CONSUMER) or 0
        return sum(1 for c in changelog.read_after(conn, 0, 10_000) if c.res_type == "Patient" and c.seq <= position)
