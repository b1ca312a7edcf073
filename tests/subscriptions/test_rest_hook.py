"""Topic-based and R4 criteria rest-hook subscriptions end to end, with a real HTTP receiver,
on SQLite and PostgreSQL: handshake, only matching changes, order, gap-free numbers, retries,
the error state and re-activation, signatures, secrets never echoed, refused endpoints."""

from __future__ import annotations

import base64
import hashlib
import hmac

from fhir_server.service.seed import seed_conformance
from tests.subscriptions.conftest import JSON, criteria_subscription, patient, topic_subscription
from tests.subscriptions.receiver import Receiver, event_numbers, status_of
from tests.waiting import wait_until


def _create(client, resource) -> dict:
    r = client.post("/fhir/Subscription", json=resource, headers=JSON)
    assert r.status_code == 201, r.text
    return r.json()


def _status(client, sub_id: str) -> str:
    return client.get(f"/fhir/Subscription/{sub_id}").json()["status"]


def _active(client, sub_id: str) -> None:
    wait_until(lambda: _status(client, sub_id) == "active", message="subscription active")


def test_handshake_activates_and_matching_creates_are_notified_in_order(subs, receiver):
    sub = _create(subs, topic_subscription(receiver.url, "Patient", "create", filters=["Patient?family=Sari"]))
    assert sub["status"] == "requested"
    _active(subs, sub["id"])
    handshakes = receiver.of_type("handshake")
    assert len(handshakes) == 1
    hs = status_of(handshakes[0])
    assert hs["status"] == "requested" and hs["events-since-subscription-start"] == "0"
    assert hs["subscription"]["reference"] == f"http://testserver/fhir/Subscription/{sub['id']}"

    ids = []
    for family in ("Sari", "Budi", "Sari", "Sari"):
        ids.append(subs.post("/fhir/Patient", json=patient(family), headers=JSON).json()["id"])
    wait_until(lambda: len(event_numbers(receiver)) == 3, message="three notifications")
    assert event_numbers(receiver) == [1, 2, 3]
    bundles = receiver.of_type("event-notification")
    focus = [e["focus"]["reference"] for b in bundles for e in status_of(b)["events"]]
    assert focus == [f"http://testserver/fhir/Patient/{i}/_history/1" for i in (ids[0], ids[2], ids[3])]
    first = bundles[0]
    assert first["type"] == "history" and first["entry"][0]["resource"]["resourceType"] == "Parameters"
    assert first["entry"][0]["request"]["url"].endswith(f"/Subscription/{sub['id']}/$status")
    assert "resource" not in first["entry"][1]  # id-only
    assert first["entry"][1]["fullUrl"] == f"http://testserver/fhir/Patient/{ids[0]}"
    # distinct notification ids (events that waited together share one notification)
    ids_seen = [r.headers["webhook-id"] for r in receiver.received if r.body and status_of(r.json())["type"] == "event-notification"]
    assert len(set(ids_seen)) == len(ids_seen)


def test_full_resource_update_and_delete_topic(subs, receiver):
    sub = _create(subs, topic_subscription(receiver.url, "Encounter", content="full-resource"))
    _active(subs, sub["id"])
    enc = {
        "resourceType": "Encounter",
        "status": "planned",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
    }
    created = subs.post("/fhir/Encounter", json=enc, headers=JSON).json()
    created["status"] = "finished"
    assert subs.put(f"/fhir/Encounter/{created['id']}", json=created, headers=JSON).status_code == 200
    assert subs.delete(f"/fhir/Encounter/{created['id']}").status_code == 204
    subs.post("/fhir/Patient", json=patient("X"), headers=JSON)  # another type: not notified
    wait_until(lambda: len(event_numbers(receiver)) == 3)
    bundles = receiver.of_type("event-notification")
    entries = [e for b in bundles for e in b["entry"][1:]]  # events that waited together share a notification
    assert [e["request"]["method"] for e in entries] == ["POST", "PUT", "DELETE"]
    assert entries[0]["resource"]["status"] == "planned"
    assert entries[1]["resource"]["status"] == "finished"
    assert "resource" not in entries[2]
    assert status_of(bundles[-1])["topic"].endswith("/SubscriptionTopic/Encounter")


def test_receiver_down_then_error_state_then_reactivation_delivers_the_backlog(subs, receiver):
    sub = _create(subs, topic_subscription(receiver.url, "Patient", "create"))
    _active(subs, sub["id"])
    receiver.status = 503
    subs.post("/fhir/Patient", json=patient("A"), headers=JSON)
    # max_failures = 4 in the test settings: four attempts, then error with Subscription.error
    wait_until(lambda: _status(subs, sub["id"]) == "error", message="error state")
    current = subs.get(f"/fhir/Subscription/{sub['id']}").json()
    assert "4 times" in current["error"]
    attempts = [r for r in receiver.received if r.body and status_of(r.json())["type"] == "event-notification"]
    assert len(attempts) == 4 and len({r.headers["webhook-id"] for r in attempts}) == 1  # same notification retried
    subs.post("/fhir/Patient", json=patient("B"), headers=JSON)  # counted while in error
    wait_until(lambda: _events_since(subs, sub["id"]) == 2, message="event counted while in error")
    st = subs.get(f"/fhir/Subscription/{sub['id']}/$status").json()
    assert st["type"] == "searchset" and status_of({"entry": st["entry"]})["status"] == "error"
    assert status_of({"entry": st["entry"]})["type"] == "query-status"
    log = subs.get(f"/fhir/Subscription/{sub['id']}/$delivery-log").json()
    assert [p for p in log["parameter"] if p["name"] == "attempt"]
    # the client re-activates; the receiver is back: handshake, then events 1 and 2 in order
    receiver.status = 200
    receiver.received.clear()
    current["status"] = "requested"
    assert subs.put(f"/fhir/Subscription/{sub['id']}", json=current, headers=JSON).status_code == 200
    wait_until(lambda: event_numbers(receiver) == [1, 2], message="backlog delivered")
    assert status_of(receiver.bundles()[0])["type"] == "handshake"
    assert _status(subs, sub["id"]) == "active" and "error" not in subs.get(f"/fhir/Subscription/{sub['id']}").json()


def _events_since(client, sub_id: str) -> int:
    params = client.get(f"/fhir/Subscription/{sub_id}/$status").json()["entry"][0]["resource"]["parameter"]
    return int(next(p["valueString"] for p in params if p["name"] == "events-since-subscription-start"))


def test_signature_and_headers_reach_the_receiver_but_are_never_echoed(subs, receiver):
    secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
    resource = topic_subscription(
        receiver.url,
        "Patient",
        "create",
        header=["Authorization: Bearer rahasia-123"],
        extension=[{"url": "https://fhir-server.id/StructureDefinition/subscription-secret", "valueString": secret}],
    )
    sub = _create(subs, resource)
    for shown in (sub, subs.get(f"/fhir/Subscription/{sub['id']}").json(), subs.get("/fhir/Subscription").json()):
        text = str(shown)
        assert "rahasia-123" not in text and secret not in text and "[redacted]" in text
    _active(subs, sub["id"])
    subs.post("/fhir/Patient", json=patient("S"), headers=JSON)
    wait_until(lambda: event_numbers(receiver) == [1])
    for r in receiver.received:
        assert r.headers["authorization"] == "Bearer rahasia-123"
        signed = f"{r.headers['webhook-id']}.{r.headers['webhook-timestamp']}.".encode() + r.body
        expected = "v1," + base64.b64encode(hmac.new(b"k" * 32, signed, hashlib.sha256).digest()).decode()
        assert r.headers["webhook-signature"] == expected
    # a client PUTting back what it read keeps the stored secrets
    current = subs.get(f"/fhir/Subscription/{sub['id']}").json()
    current["reason"] = "changed"
    assert subs.put(f"/fhir/Subscription/{sub['id']}", json=current, headers=JSON).status_code == 200
    receiver.received.clear()
    subs.post("/fhir/Patient", json=patient("T"), headers=JSON)
    wait_until(lambda: event_numbers(receiver) == [2])
    assert all(r.headers["authorization"] == "Bearer rahasia-123" for r in receiver.received)


def test_r4_criteria_rest_hook_empty_and_full_payload(subs, receiver):
    empty = _create(subs, criteria_subscription(receiver.url, "Patient?family=Empty", header=["X-Api-Key: k1"]))
    full_receiver = Receiver().start()
    try:
        full = _create(subs, criteria_subscription(full_receiver.url, "Patient?family=Full", payload="application/fhir+json"))
        _active(subs, empty["id"])
        _active(subs, full["id"])
        p1 = subs.post("/fhir/Patient", json=patient("Empty"), headers=JSON).json()
        p2 = subs.post("/fhir/Patient", json=patient("Full"), headers=JSON).json()
        wait_until(lambda: len(receiver.received) == 1 and len(full_receiver.received) == 1)
        assert receiver.received[0].method == "POST" and receiver.received[0].body == b""
        assert receiver.received[0].headers["x-api-key"] == "k1"
        got = full_receiver.received[0]
        assert got.method == "PUT" and got.path == f"/hook/Patient/{p2['id']}" and got.json()["id"] == p2["id"]
        # R4: no notification on delete
        subs.delete(f"/fhir/Patient/{p1['id']}")
        subs.post("/fhir/Patient", json=patient("Empty"), headers=JSON)
        wait_until(lambda: len(receiver.received) == 2)
    finally:
        full_receiver.stop()


def test_refused_endpoint_is_never_contacted(subs):
    """127.0.0.2 is loopback outside the allowed 127.0.0.1/32: refused at creation, and a
    receiver listening there proves nothing was sent."""
    trap = Receiver(host="127.0.0.2").start()
    try:
        r = subs.post("/fhir/Subscription", json=topic_subscription(trap.url, "Patient"), headers=JSON)
        assert r.status_code == 422 and r.json()["resourceType"] == "OperationOutcome"
        assert "refused" in r.json()["issue"][0]["diagnostics"]
        for url in ("http://169.254.169.254/latest/meta-data", "https://10.0.0.1/x", "http://[::1]:8080/x", "ftp://127.0.0.1/x"):
            bad = subs.post("/fhir/Subscription", json=topic_subscription(url, "Patient"), headers=JSON)
            assert bad.status_code in (400, 422), url
        assert trap.received == []
        assert subs.get("/fhir/Subscription").json().get("total", 0) == 0
    finally:
        trap.stop()


def test_unsupported_subscriptions_are_rejected(subs, receiver):
    cases = [
        topic_subscription(receiver.url, "Patient", filters=["Patient?nonsense=1"]),
        topic_subscription(receiver.url, "Patient", "delete", filters=["family=x"]),
        {**topic_subscription(receiver.url, "Patient"), "criteria": "http://example.org/SubscriptionTopic/unknown"},
        topic_subscription(receiver.url, "Patient", content="everything"),
        {**criteria_subscription(receiver.url, "Patient?family=x"), "channel": {"type": "email", "endpoint": "mailto:a@b.c"}},
        criteria_subscription(receiver.url, "Patient?_include=Patient:organization"),
        criteria_subscription(receiver.url, "NotAType?x=1"),
        {**criteria_subscription(receiver.url, "Patient?family=x"), "status": "error"},
    ]
    for case in cases:
        r = subs.post("/fhir/Subscription", json=case, headers=JSON)
        assert r.status_code in (400, 422), (case, r.text)
    # PATCH would bypass the checks: not offered
    sub = _create(subs, topic_subscription(receiver.url, "Patient"))
    r = subs.patch(
        f"/fhir/Subscription/{sub['id']}",
        json=[{"op": "replace", "path": "/status", "value": "active"}],
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert r.status_code == 405
    tx = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": topic_subscription(receiver.url), "request": {"method": "POST", "url": "Subscription"}}],
    }
    assert subs.post("/fhir", json=tx, headers=JSON).status_code == 422
    assert receiver.of_type("event-notification") == []


def test_capability_statement_declares_topics_channels_payloads_and_operations(subs):
    cap = subs.get("/fhir/metadata").json()
    assert "http://hl7.org/fhir/uv/subscriptions-backport/CapabilityStatement/backport-subscription-server-r4" in cap["instantiates"]
    by_type = {r["type"]: r for r in cap["rest"][0]["resource"]}
    topics = {e["valueCanonical"] for e in by_type["Coverage"]["extension"] if e["url"].endswith("subscriptiontopic-canonical")}
    assert topics == {f"https://fhir-server.id/SubscriptionTopic/Coverage{s}" for s in ("", "-create", "-update", "-delete")}
    sub = by_type["Subscription"]
    assert {e["valueCode"] for e in sub["extension"] if e["url"].endswith("subscription-channel-type")} == {"rest-hook", "websocket"}
    assert {e["valueCode"] for e in sub["extension"] if e["url"].endswith("subscription-payload-content")} == {
        "empty",
        "id-only",
        "full-resource",
    }
    assert "patch" not in {i["code"] for i in sub["interaction"]}
    assert {"status", "events", "get-ws-binding-token", "delivery-log"} <= {o["name"] for o in sub["operation"]}
    ws_url = next(e["valueUri"] for e in cap["rest"][0]["extension"] if e["url"].endswith("capabilitystatement-websocket"))
    assert ws_url == "ws://testserver/fhir/websocket"
    # what it declares is what it does: a topic-based websocket subscription is taken (tests/subscriptions/test_websocket.py)
    ws = topic_subscription("", "Patient")
    ws["channel"] = {"type": "websocket", "payload": "application/fhir+json", "_payload": ws["channel"]["_payload"]}
    assert subs.post("/fhir/Subscription", json=ws, headers=JSON).status_code == 201


def test_events_replays_from_the_event_store(subs, receiver):
    sub = _create(subs, topic_subscription(receiver.url, "Patient", "create", content="full-resource"))
    _active(subs, sub["id"])
    created = [subs.post("/fhir/Patient", json=patient(f"R{n}"), headers=JSON).json()["id"] for n in range(4)]
    wait_until(lambda: len(event_numbers(receiver)) == 4)
    replay = subs.get(f"/fhir/Subscription/{sub['id']}/$events?eventsSinceNumber=2&eventsUntilNumber=3").json()
    st = status_of(replay)
    assert st["type"] == "query-event" and [e["event-number"] for e in st["events"]] == ["2", "3"]
    assert [e["resource"]["id"] for e in replay["entry"][1:]] == created[1:3]
    ids_only = subs.get(f"/fhir/Subscription/{sub['id']}/$events?content=id-only").json()
    assert len(ids_only["entry"]) == 5 and all("resource" not in e for e in ids_only["entry"][1:])
    assert subs.get(f"/fhir/Subscription/{sub['id']}/$events?eventsSinceNumber=x").status_code == 400


def test_heartbeats_when_nothing_happens(subs, receiver):
    period = [{"url": "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-heartbeat-period", "valueUnsignedInt": 1}]
    sub = _create(subs, topic_subscription(receiver.url, "Patient", "create", extension=period))
    _active(subs, sub["id"])
    wait_until(lambda: len(receiver.of_type("heartbeat")) >= 2, message="two heartbeats")
    beat = status_of(receiver.of_type("heartbeat")[0])
    assert beat["status"] == "active" and beat["events"] == [] and beat["events-since-subscription-start"] == "0"


def test_the_backport_operation_definitions_are_the_igs(subs):
    """$status, $events and $get-ws-binding-token are declared with the Backport IG 1.1.0's own
    OperationDefinitions (canonical URLs, levels, parameters), stored and readable."""
    seed_conformance(subs.app.state.fhir.resources)  # as at start-up (the fixture empties every table)
    cap = subs.get("/fhir/metadata").json()
    sub = next(r for r in cap["rest"][0]["resource"] if r["type"] == "Subscription")
    ig = "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/"
    declared = {o["name"]: o["definition"] for o in sub["operation"]}
    expected = {
        "status": ("backport-subscription-status", True, ["id", "status", "return"]),
        "events": ("backport-subscription-events", False, ["eventsSinceNumber", "eventsUntilNumber", "content", "return"]),
        "get-ws-binding-token": (
            "backport-subscription-get-ws-binding-token",
            True,
            ["id", "token", "expiration", "subscription", "websocket-url"],
        ),
    }
    for name, (def_id, type_level, params) in expected.items():
        assert declared[name] == ig + def_id
        stored = subs.get(f"/fhir/OperationDefinition/{def_id}")
        assert stored.status_code == 200, stored.text
        od = stored.json()
        assert od["url"] == ig + def_id and od["version"] == "1.1.0" and od["code"] == name
        assert od["type"] is type_level and od["instance"] is True and od["system"] is False
        assert [p["name"] for p in od["parameter"]] == params


def test_status_at_the_instance_level_ignores_the_status_filter(subs, receiver):
    sub = _create(subs, topic_subscription(receiver.url, "Patient", "create"))
    _active(subs, sub["id"])
    one = subs.get(f"/fhir/Subscription/{sub['id']}/$status?status=off").json()
    assert one["total"] == 1 and status_of({"entry": one["entry"]})["status"] == "active"
    assert subs.get("/fhir/Subscription/$status?status=off").json()["total"] == 0
    assert subs.get("/fhir/Subscription/$status?status=active").json()["total"] == 1
