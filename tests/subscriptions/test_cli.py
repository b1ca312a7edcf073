"""``fhir-server subscriptions list|status|replay`` on the running app's database (both backends)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from fhir_server.cli import app as cli
from fhir_server.storage import changelog, claims
from fhir_server.storage.tables import change_log
from fhir_server.storage.work_tables import subscription_deliveries, subscription_events
from fhir_server.subscriptions import store
from fhir_server.timeutil import now_us
from tests.subscriptions.conftest import JSON, patient, topic_subscription
from tests.subscriptions.receiver import event_numbers, status_of
from tests.waiting import wait_until


def test_list_status_and_replay(subs, receiver):
    url = subs.app.state.fhir.settings.database_url
    secret_header = ["Authorization: Bearer cli-secret"]
    sub = subs.post(
        "/fhir/Subscription", json=topic_subscription(receiver.url, "Patient", "create", header=secret_header), headers=JSON
    ).json()
    wait_until(lambda: subs.get(f"/fhir/Subscription/{sub['id']}").json()["status"] == "active")
    for n in range(3):
        subs.post("/fhir/Patient", json=patient(f"C{n}"), headers=JSON)
    wait_until(lambda: event_numbers(receiver) == [1, 2, 3])
    run = CliRunner()

    def listed_all_delivered():
        # the worker counts a delivery once the receiver has answered: the receiver can have
        # event 3 a moment before the count says so
        out = run.invoke(cli, ["subscriptions", "list", "--database-url", url])
        return out if "delivered=3" in out.output else None

    listed = wait_until(listed_all_delivered)
    assert listed.exit_code == 0 and sub["id"] in listed.output and "events=3" in listed.output and "delivered=3" in listed.output
    status = run.invoke(cli, ["subscriptions", "status", sub["id"], "--database-url", url])
    assert status.exit_code == 0, status.output
    info = json.loads(status.output[: status.output.index("\n}") + 2])
    assert info["status"] == "active" and info["events"] == 3 and info["headers"] == ["Authorization"]
    assert "cli-secret" not in status.output and "event-notification" in status.output
    replay = run.invoke(cli, ["subscriptions", "replay", sub["id"], "--from", "2", "--database-url", url])
    assert replay.exit_code == 0, replay.output
    wait_until(lambda: event_numbers(receiver) == [1, 2, 3, 2, 3])
    # the replay is one notification of both events, named by its range (a receiver that saw them
    # before de-duplicates on the event numbers)
    again = [r.headers["webhook-id"] for r in receiver.received if r.body and b"event-notification" in r.body]
    assert again[-1] == f"{sub['id']}.event-notification.2-3"
    assert run.invoke(cli, ["subscriptions", "status", "nope", "--database-url", url]).exit_code == 1


def test_changes_purge_removes_old_subscription_rows_and_keeps_changes_a_consumer_has_not_read(subs, receiver):
    state = subs.app.state.fhir
    url = state.settings.database_url
    sub = subs.post("/fhir/Subscription", json=topic_subscription(receiver.url, "Patient", "create"), headers=JSON).json()["id"]
    wait_until(lambda: subs.get(f"/fhir/Subscription/{sub}").json()["status"] == "active")
    subs.post("/fhir/Patient", json=patient("Old"), headers=JSON)
    wait_until(lambda: event_numbers(receiver) == [1])

    def caught_up() -> bool:
        with state.db.read() as conn:
            return claims.cursor_position(conn, store.CONSUMER) == changelog.last_seq(conn)

    wait_until(caught_up, message="the matcher read every change")

    def both_attempts_recorded() -> bool:  # the receiver has the event before its attempt is recorded
        with state.db.read() as conn:
            return len(store.attempts(conn, sub)) == 2  # the handshake and the event notification

    wait_until(both_attempts_recorded, message="the delivery attempts were recorded")
    old = now_us() - 100 * 86_400_000_000
    with state.db.write() as conn:
        last = changelog.last_seq(conn)
        conn.execute(change_log.update().values(recorded_us=old))
        conn.execute(subscription_events.update().values(recorded_us=old))
        conn.execute(subscription_deliveries.update().values(started_us=old))
        store.add_ws_token(conn, "0" * 64, [sub], None, now_us() - 1_000_000)
        claims.set_cursor(conn, "slow-consumer", last - 1, now_us())  # has not read the newest change yet
    result = CliRunner().invoke(cli, ["changes", "purge", "--days", "90", "--database-url", url])
    assert result.exit_code == 0, result.output
    assert "1 older change-log rows kept: consumer 'slow-consumer'" in result.output
    assert "1 subscription events and 2 delivery attempts older than 90 days, 1 expired websocket tokens deleted" in result.output
    with state.db.read() as conn:
        assert [c.seq for c in changelog.read_after(conn, 0, 10_000)] == [last]
        assert store.events(conn, sub, 1) == [] and store.attempts(conn, sub) == []
    # what $events can replay is what is kept: the gap shows in the numbers
    replay = subs.get(f"/fhir/Subscription/{sub}/$events").json()
    assert len(replay["entry"]) == 1 and status_of(replay)["events-since-subscription-start"] == "1"
