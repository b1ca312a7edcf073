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
