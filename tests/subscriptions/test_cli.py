"""``fhir-server subscriptions list|status|replay`` on the running app's database (both backends)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from fhir_server.cli import app as cli
from tests.subscriptions.conftest import JSON, patient, topic_subscription
from tests.subscriptions.receiver import event_numbers
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
    listed = run.invoke(cli, ["subscriptions", "list", "--database-url", url])
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
