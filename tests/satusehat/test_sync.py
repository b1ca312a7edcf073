"""The sync against the simulator over real HTTP, on SQLite and PostgreSQL: a visit appears in
SATUSEHAT exactly once, parents first, references rewritten to SATUSEHAT ids, times in UTC; later
changes are PUTs; what SATUSEHAT would refuse is held; a child waits for its parent; rule errors
fail with the rule kept and are retried only by hand."""

from __future__ import annotations

import time

from tests.satusehat.conftest import (
    DOCTOR_IHS,
    PATIENT_IHS,
    base_records,
    condition,
    encounter,
    observation,
    patient,
    put,
    sync_status,
)
from tests.satusehat.simulator import ORG
from tests.waiting import wait_until


def _synced(fhir, *refs: str) -> bool:
    return all(sync_status(fhir, *ref.split("/")).get("status") == "synced" for ref in refs)


def test_a_visit_appears_once_in_order_with_satusehat_references(fhir, sim):
    base_records(fhir)
    put(fhir, encounter(diagnosis=[{"condition": {"reference": "Condition/c1"}, "rank": 1}]))
    put(fhir, condition("c1"))
    put(fhir, condition("c2", code="I10"))
    put(fhir, observation("o1"))
    put(fhir, observation("o2", loinc="9279-1", value=18))
    refs = ["Location/poli1", "Encounter/e1", "Condition/c1", "Condition/c2", "Observation/o1", "Observation/o2"]
    wait_until(lambda: _synced(fhir, *refs))
    assert len(sim.resources("Location")) == 1
    [enc] = sim.resources("Encounter")
    assert len(sim.resources("Condition")) == 2 and len(sim.resources("Observation")) == 2
    assert enc["subject"]["reference"] == f"Patient/{PATIENT_IHS}"
    assert enc["participant"][0]["individual"]["reference"] == f"Practitioner/{DOCTOR_IHS}"
    assert enc["location"][0]["location"]["reference"] == f"Location/{sim.resources('Location')[0]['id']}"
    assert enc["serviceProvider"] == {"reference": f"Organization/{ORG}"}
    assert enc["identifier"][0] == {"system": f"http://sys-ids.kemkes.go.id/encounter/{ORG}", "use": "official", "value": "e1"}
    assert enc["period"] == {"start": "2026-11-20T02:00:00+00:00", "end": "2026-11-20T02:30:00+00:00"}
    assert [h["status"] for h in enc["statusHistory"]] == ["arrived", "in-progress", "finished"]
    # the Encounter went again (PUT) once its diagnosis Condition existed in SATUSEHAT
    c1 = sim.by_identifier("Condition", "c1")[0]
    wait_until(lambda: sim.resources("Encounter")[0].get("diagnosis", [{}])[0].get("condition") == {"reference": f"Condition/{c1['id']}"})
    for obs in sim.resources("Observation"):
        assert obs["encounter"]["reference"] == f"Encounter/{enc['id']}"
        assert obs["effectiveDateTime"] == "2026-11-20T02:10:00+00:00"
    st = sync_status(fhir, "Encounter", "e1")
    assert st["satusehat-id"] == enc["id"] and st["attempts"] >= 1 and "last-attempt" in st
    # order: nothing referenced an id SATUSEHAT did not have yet (the simulator refuses that with 20007)
    assert all(c.status in (200, 201) for c in sim.calls if c.method in ("POST", "PUT")), [(c.path, c.status, c.body) for c in sim.calls]


def test_a_later_change_is_sent_as_a_put(fhir, sim):
    base_records(fhir)
    put(fhir, encounter(status="in-progress", end=None))
    wait_until(lambda: _synced(fhir, "Encounter/e1"))
    put(fhir, encounter())
    wait_until(lambda: sim.resources("Encounter") and sim.resources("Encounter")[0]["status"] == "finished")
    assert len(sim.resources("Encounter")) == 1
    assert sim.count("POST", "Encounter") == 1 and sim.count("PUT", "Encounter/") == 1
    wait_until(lambda: _synced(fhir, "Encounter/e1"))


def test_what_satusehat_would_refuse_is_held_and_a_child_waits(fhir, sim):
    base_records(fhir)
    put(fhir, encounter(end=None))  # finished without period.end: rule 10121
    put(fhir, condition("c1"))
    wait_until(lambda: sync_status(fhir, "Encounter", "e1").get("status") == "held")
    assert "period.end" in sync_status(fhir, "Encounter", "e1")["last-error"]
    wait_until(lambda: sync_status(fhir, "Condition", "c1").get("status") == "waiting")
    st = sync_status(fhir, "Condition", "c1")
    assert st["waits-for"] == {"reference": "Encounter/e1"} and "held" in st["last-error"]
    assert sim.count("POST", "Encounter") == 0 and sim.count("POST", "Condition") == 0
    put(fhir, encounter())  # fixed: both go, the Encounter first
    wait_until(lambda: _synced(fhir, "Encounter/e1", "Condition/c1"))
    assert len(sim.resources("Encounter")) == 1 and len(sim.resources("Condition")) == 1


def test_a_patient_without_nik_is_held_until_it_has_one(fhir, sim):
    base_records(fhir)
    put(fhir, patient(nik=None))
    put(fhir, encounter())
    wait_until(lambda: sync_status(fhir, "Encounter", "e1").get("status") == "held")
    assert "no NIK" in sync_status(fhir, "Encounter", "e1")["last-error"]
    put(fhir, patient())  # the Patient gets its NIK: its held items are tried again
    wait_until(lambda: _synced(fhir, "Encounter/e1"))


def test_a_rule_error_fails_with_the_rule_kept_and_is_retried_by_hand(fhir, sim):
    base_records(fhir)
    put(fhir, encounter())
    put(fhir, condition("c1", code="X99.9"))
    wait_until(lambda: sync_status(fhir, "Condition", "c1").get("status") == "failed")
    st = sync_status(fhir, "Condition", "c1")
    assert st["rule"] == "10035" and st["outcome"]["resourceType"] == "OperationOutcome"
    assert "X99.9" in st["last-error"]
    wait_until(lambda: _synced(fhir, "Encounter/e1"))
    assert sim.count("POST", "Condition") == 1  # not retried by itself
    r = fhir.post("/fhir/Condition/c1/$satusehat-sync")
    assert r.status_code == 200, r.text
    wait_until(lambda: sim.count("POST", "Condition") == 2)
    assert fhir.get("/fhir/Condition/c1/$satusehat-sync").status_code == 405
    # fixed locally: a new version is sent
    put(fhir, condition("c1"))
    wait_until(lambda: _synced(fhir, "Condition/c1"))


def test_system_status_counts_per_status_and_facility(fhir, sim):
    base_records(fhir)
    put(fhir, encounter())
    put(fhir, condition("c1", code="X99.9"))
    wait_until(lambda: sync_status(fhir, "Condition", "c1").get("status") == "failed")
    wait_until(lambda: _synced(fhir, "Encounter/e1", "Location/poli1"))
    r = fhir.get("/fhir/$satusehat-status")
    assert r.status_code == 200, r.text
    params = {p["name"]: p for p in r.json()["parameter"]}
    assert params["synced"]["valueInteger"] == 2 and params["failed"]["valueInteger"] == 1
    facility = {p["name"]: p.get("valueInteger", p.get("valueString")) for p in params["facility"]["part"]}
    assert facility["facility"] == "default" and facility["failed"] == 1
    assert fhir.get("/fhir/Patient/p1/$satusehat-status").status_code == 404  # Patients are looked up, not sent


def test_an_unknown_nik_is_held_and_not_asked_again_until_the_period_ends_or_a_retry(fhir, sim):
    base_records(fhir)
    put(fhir, patient(nik="1111111111111111"))
    put(fhir, encounter())
    wait_until(lambda: sync_status(fhir, "Encounter", "e1").get("status") == "held")
    assert "knows no Patient" in sync_status(fhir, "Encounter", "e1")["last-error"]
    asked = sim.count("GET", "Patient")
    assert asked == 1
    put(fhir, {**patient(nik="1111111111111111"), "name": [{"family": "Other"}]})  # tried again: the miss is cached
    wait_until(lambda: "asked again after" in (sync_status(fhir, "Encounter", "e1").get("last-error") or ""))
    assert sim.count("GET", "Patient") == asked
    assert fhir.post("/fhir/Encounter/e1/$satusehat-sync").status_code == 200  # a retry by hand asks again
    wait_until(lambda: sim.count("GET", "Patient") == asked + 1)
    wait_until(lambda: sync_status(fhir, "Encounter", "e1").get("status") == "held")


def test_the_token_is_renewed_before_it_expires(fhir, sim):
    worker = fhir.app.state.fhir.satusehat_worker
    client = worker.clients["default"]
    sim.token_lifetime = 3  # "expires_in": "3": renewed a third of it before the end
    try:
        sim.expire_tokens()
        base_records(fhir)
        put(fhir, encounter())
        wait_until(lambda: sync_status(fhir, "Encounter", "e1").get("status") == "synced")
        first = client.tokens_fetched
        seen = len(sim.calls)
        for n in range(3):
            time.sleep(1.2)
            put(fhir, observation(f"o{n}"))
            wait_until(lambda n=n: sync_status(fhir, "Observation", f"o{n}").get("status") == "synced")
        assert client.tokens_fetched > first
        assert all(c.status != 401 for c in sim.calls[seen:])  # never refused: renewed in time
    finally:
        sim.token_lifetime = 3599
