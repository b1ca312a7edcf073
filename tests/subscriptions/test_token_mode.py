"""Subscriptions with FHIR_AUTH=token: creating one needs scope on Subscription and on the topic's
type; a subscriber receives only what its client may read (a revoked client's subscription goes
to error and nothing more is sent); other clients never see header values."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from fhir_server.app import create_app
from fhir_server.auth.clients import add_client, revoke_client
from tests.conftest import BACKENDS, database
from tests.subscriptions.conftest import criteria_subscription, patient, settings, topic_subscription
from tests.subscriptions.receiver import Receiver, event_numbers
from tests.waiting import wait_until

pytestmark = pytest.mark.slow  # a fresh app in token mode per backend


@pytest.fixture(params=BACKENDS)
def secured(request, tmp_path) -> Iterator[TestClient]:
    with database(request.param, tmp_path) as url, TestClient(create_app(settings(url, auth="token"))) as c:
        yield c


def client_token(client: TestClient, scopes: str) -> tuple[str, dict[str, str]]:
    with client.app.state.fhir.db.write() as conn:
        cid, secret = add_client(conn, name="EMR", scopes=scopes)
    r = client.post(
        "/fhir/auth/token", data={"grant_type": "client_credentials", "client_id": cid, "client_secret": secret, "scope": scopes}
    )
    assert r.status_code == 200, r.text
    return cid, {"Authorization": f"Bearer {r.json()['access_token']}", "Content-Type": "application/fhir+json"}


def test_creating_needs_scope_on_subscription_and_on_the_topic_type(secured):
    receiver = Receiver().start()
    try:
        _, no_patient = client_token(secured, "system/Subscription.cruds system/Encounter.rs")
        _, no_subscription = client_token(secured, "system/Patient.rs")
        _, read_only_patient = client_token(secured, "system/Subscription.cruds system/Patient.r")
        for headers in (no_patient, no_subscription, read_only_patient):
            r = secured.post("/fhir/Subscription", json=topic_subscription(receiver.url, "Patient"), headers=headers)
            assert r.status_code == 403, r.text
            r = secured.post("/fhir/Subscription", json=criteria_subscription(receiver.url, "Patient?family=x"), headers=headers)
            assert r.status_code == 403, r.text
        # a chain into a type the client may not search is refused as well
        _, patients = client_token(secured, "system/Subscription.cruds system/Patient.rs")
        r = secured.post("/fhir/Subscription", json=criteria_subscription(receiver.url, "Patient?organization.name=x"), headers=patients)
        assert r.status_code == 403, r.text
        assert secured.post("/fhir/Subscription", json=topic_subscription(receiver.url, "Patient"), headers=patients).status_code == 201
        # $events needs read on the topic's type too
        sub_id = secured.get("/fhir/Subscription", headers=patients).json()["entry"][0]["resource"]["id"]
        _, subs_only = client_token(secured, "system/Subscription.rs")
        assert secured.get(f"/fhir/Subscription/{sub_id}/$events", headers=subs_only).status_code == 403
        assert secured.get(f"/fhir/Subscription/{sub_id}/$events", headers=patients).status_code == 200
        assert receiver.of_type("event-notification") == []
    finally:
        receiver.stop()


def test_a_revoked_subscriber_receives_nothing_more_and_headers_stay_hidden(secured):
    receiver = Receiver().start()
    try:
        cid, emr = client_token(secured, "system/Subscription.cruds system/Patient.crus")
        sub = topic_subscription(receiver.url, "Patient", "create", header=["Authorization: Bearer emr-secret"])
        created = secured.post("/fhir/Subscription", json=sub, headers=emr).json()
        wait_until(lambda: secured.get(f"/fhir/Subscription/{created['id']}", headers=emr).json()["status"] == "active")
        secured.post("/fhir/Patient", json=patient("A"), headers=emr)
        wait_until(lambda: event_numbers(receiver) == [1])
        _, other = client_token(secured, "system/Subscription.rs")
        for r in (secured.get(f"/fhir/Subscription/{created['id']}", headers=other), secured.get("/fhir/Subscription", headers=other)):
            assert r.status_code == 200 and "emr-secret" not in r.text
        with secured.app.state.fhir.db.write() as conn:
            assert revoke_client(conn, cid)
        _, writer = client_token(secured, "system/Patient.c")
        secured.post("/fhir/Patient", json=patient("B"), headers=writer)
        wait_until(lambda: secured.get(f"/fhir/Subscription/{created['id']}", headers=other).json()["status"] == "error")
        assert "revoked" in secured.get(f"/fhir/Subscription/{created['id']}", headers=other).json()["error"]
        assert event_numbers(receiver) == [1]
    finally:
        receiver.stop()
