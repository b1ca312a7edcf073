"""The fault matrix over real HTTP, on SQLite and PostgreSQL: whatever goes wrong on the way
(plain-text 5xx, 429 with Retry-After, a dropped connection, an answer slower than the timeout,
a create whose answer is lost, the token endpoint down, the token rejected), the visit ends up in
SATUSEHAT exactly once. After a lost answer the sync looks the resource up by its identifier
before sending again (never a second create)."""

from __future__ import annotations

import pytest

from tests.satusehat.conftest import base_records, condition, encounter, put, sync_status
from tests.satusehat.simulator import Fault
from tests.waiting import wait_until

FAULTS = {
    "plain-text-500": [Fault("POST", 500, path="Encounter")],
    "503-twice": [Fault("POST", 503, path="Encounter"), Fault("POST", 503, path="Encounter")],
    "429-retry-after": [Fault("POST", 429, retry_after="1", path="Encounter")],
    "connection-dropped": [Fault("POST", 0, path="Encounter")],
    "slower-than-timeout": [Fault("POST", 201, delay=1.5, path="Encounter", after_create=True)],
    "answer-lost-after-create": [Fault("POST", after_create=True, path="Encounter")],
    "token-endpoint-down": [Fault("token", 500)],
    "nik-lookup-500": [Fault("GET", 502, path="Patient")],
    "condition-answer-lost": [Fault("POST", after_create=True, path="Condition")],
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(FAULTS))
def test_every_fault_ends_with_exactly_one_copy(fhir, sim, name):
    sim.expire_tokens()  # the worker's token is refused: a new one is fetched (through the faults)
    sim.fail(*FAULTS[name])
    base_records(fhir)
    put(fhir, encounter())
    put(fhir, condition("c1"))
    wait_until(lambda: all(sync_status(fhir, *r.split("/")).get("status") == "synced" for r in ("Encounter/e1", "Condition/c1")))
    assert len(sim.by_identifier("Encounter", "e1")) == 1
    assert len(sim.by_identifier("Condition", "c1")) == 1
    assert not sim.faults, "every fault was hit"
    if "lost" in name or "slower" in name:
        # looked up by identifier before sending again, and not created a second time
        kind = "Condition" if "condition" in name else "Encounter"
        assert sim.count("GET", kind) >= 1
        assert sim.count("POST", kind) == 1
    if name == "429-retry-after":
        st = sync_status(fhir, "Encounter", "e1")
        assert st["attempts"] >= 2


def test_a_rejected_token_is_replaced(fhir, sim):
    base_records(fhir)
    put(fhir, encounter())
    wait_until(lambda: sync_status(fhir, "Encounter", "e1").get("status") == "synced")
    sim.expire_tokens()  # SATUSEHAT answers 401 to the token in hand
    put(fhir, condition("c1"))
    wait_until(lambda: sync_status(fhir, "Condition", "c1").get("status") == "synced")
    assert len(sim.resources("Condition")) == 1


def test_after_a_retry_the_unsent_creates_are_not_looked_up(fhir, sim):
    """A chunk's creates are marked in doubt before the first POST; when one answer is a 503 the
    round stops there. Only that create is in doubt (it may have happened): the next round looks
    it up, and sends the chunk's other creates, which were never sent, without a look-up."""
    base_records(fhir)
    put(fhir, encounter())
    wait_until(lambda: sync_status(fhir, "Encounter", "e1").get("status") == "synced")
    sim.fail(Fault("POST", 503, path="Condition"))
    ids = ["c1", "c2", "c3", "c4"]
    entries = [{"resource": condition(c), "request": {"method": "PUT", "url": f"Condition/{c}"}} for c in ids]
    r = fhir.post("/fhir", json={"resourceType": "Bundle", "type": "transaction", "entry": entries})
    assert r.status_code == 200, r.text
    wait_until(lambda: all(sync_status(fhir, "Condition", c).get("status") == "synced" for c in ids))
    assert not sim.faults, "the fault was hit"
    assert all(len(sim.by_identifier("Condition", c)) == 1 for c in ids)
    assert sim.count("GET", "Condition") == 1  # the one answered 503, not the three never sent
