"""The subscription operations answer valid FHIR (tests/api/test_answers_are_valid_fhir.py):
``$delivery-log`` of a subscription never attempted answered ``parameter: []``."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.api.test_answers_are_valid_fhir import structure_issues
from tests.subscriptions.conftest import criteria_subscription


def test_subscription_operations_answer_valid_fhir(subs: TestClient, receiver: Any) -> None:
    """Before any notification: no delivery attempt, no event."""
    sub = subs.post("/fhir/Subscription", json=criteria_subscription(receiver.url, "Patient?family=NobodyValid")).json()
    assert sub["resourceType"] == "Subscription", sub
    found = {}
    for op in ("$status", "$events", "$delivery-log"):
        r = subs.get(f"/fhir/Subscription/{sub['id']}/{op}")
        assert r.status_code == 200, (op, r.text)
        found[op] = structure_issues(r.json())
    assert {op: issues for op, issues in found.items() if issues} == {}


def test_notifications_are_valid_fhir(subs: TestClient, receiver: Any) -> None:
    """What a receiver gets: handshakes, heartbeats and event notifications (id-only and
    full-resource topics). An R4 criteria subscription's payload is the stored resource itself."""
    from tests.subscriptions.conftest import JSON, patient, topic_subscription
    from tests.waiting import wait_until

    period = [{"url": "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-heartbeat-period", "valueUnsignedInt": 1}]
    subscriptions = [
        topic_subscription(receiver.url, "Patient", "create", extension=period),
        topic_subscription(receiver.url, "Patient", content="full-resource"),
    ]
    for sub in subscriptions:
        assert subs.post("/fhir/Subscription", json=sub, headers=JSON).status_code == 201
    wait_until(lambda: len(receiver.of_type("handshake")) >= 2, message="the topic handshakes")
    subs.post("/fhir/Patient", json=patient("Sah"), headers=JSON)
    wait_until(
        lambda: len(receiver.of_type("heartbeat")) >= 1 and len(receiver.of_type("event-notification")) >= 2, message="notifications"
    )
    invalid = {n: structure_issues(b) for n, b in enumerate(receiver.bundles()) if structure_issues(b)}
    assert invalid == {}, [receiver.bundles()[n] for n in invalid]
