"""Every request leaves an AuditEvent; clients can search them but never write them."""

from __future__ import annotations

import orjson

from tests.api.test_rest_crud import PATIENT, post
from tests.waiting import wait_until


def _events(client, **params):
    recorder = client.app.state.fhir.recorder
    # the flusher is a task of the app's event loop: ask there, between its steps, whether all
    # that was recorded is written (flush() from this thread would race with that task)
    wait_until(lambda: client.portal.call(lambda: recorder.pending == 0))
    return [e["resource"] for e in client.get("/fhir/AuditEvent", params=params).json()["entry"]]


def test_reads_searches_writes_and_failures_are_audited(client):
    pid = post(client, PATIENT).json()["id"]
    client.get(f"/fhir/Patient/{pid}")
    client.get("/fhir/Patient", params={"gender": "female"})
    client.get("/fhir/Patient/missing")
    events = _events(client, _count="50")
    subtypes = [e["subtype"][0]["code"] for e in events]
    assert {"create", "read", "search-type"} <= set(subtypes)
    read = next(e for e in events if e["subtype"][0]["code"] == "read" and e["outcome"] == "0")
    assert read["entity"][0]["what"]["reference"] == f"Patient/{pid}"
    assert read["agent"][0]["network"]["address"]
    failed = next(e for e in events if e["subtype"][0]["code"] == "read" and e["outcome"] == "4")
    assert failed["entity"][0]["what"]["reference"] == "Patient/missing"
    search = next(e for e in events if e["subtype"][0]["code"] == "search-type")
    assert search["entity"][0]["query"]  # base64 of the query string
    one = client.get(f"/fhir/AuditEvent/{read['id']}")
    assert one.status_code == 200 and one.json()["id"] == read["id"]


def test_audit_events_cannot_be_written(client):
    event = {
        "resourceType": "AuditEvent",
        "type": {"code": "rest"},
        "recorded": "2026-01-01T00:00:00+00:00",
        "agent": [{"requestor": True}],
        "source": {"observer": {"display": "x"}},
    }
    assert (
        client.post("/fhir/AuditEvent", content=orjson.dumps(event), headers={"Content-Type": "application/fhir+json"}).status_code == 405
    )
    assert (
        client.put(
            "/fhir/AuditEvent/x", content=orjson.dumps({**event, "id": "x"}), headers={"Content-Type": "application/fhir+json"}
        ).status_code
        == 405
    )
    assert client.delete("/fhir/AuditEvent/x").status_code == 405
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": event, "request": {"method": "POST", "url": "AuditEvent"}}],
    }
    assert client.post("/fhir", content=orjson.dumps(bundle), headers={"Content-Type": "application/fhir+json"}).status_code == 405


def test_capability_statement_shows_audit_event_read_and_search_only(client):
    rest = client.get("/fhir/metadata").json()["rest"][0]
    audit = next(r for r in rest["resource"] if r["type"] == "AuditEvent")
    assert {i["code"] for i in audit["interaction"]} == {"read", "search-type"}
    assert {"date", "subtype", "entity"} <= {p["name"] for p in audit["searchParam"]}


def test_batch_entries_are_audited_as_the_same_requests_alone(client):
    """A read, an operation, an audit-trail search and a failure sent as batch entries leave the
    AuditEvents they leave alone (only write entries were recorded, with their transactions):
    reading a record through a batch must not hide it from the trail."""
    pid = post(client, PATIENT).json()["id"]
    urls = [f"Patient/{pid}", f"Patient/{pid}/$everything", "AuditEvent?action=C", "Patient/missing"]
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [{"request": {"method": "GET", "url": u}} for u in urls]}
    request_id = "batch-entries-audit"
    r = client.post("/fhir", content=orjson.dumps(batch), headers={"Content-Type": "application/fhir+json", "X-Request-Id": request_id})
    assert [e["response"]["status"][:3] for e in r.json()["entry"]] == ["200", "200", "200", "404"]
    events = _events(client, _count="50")

    def about(subtype: str, outcome: str) -> list[dict]:
        """The batch's events (each names the batch request's id)."""
        return [e for e in events if e["subtype"][0]["code"] == subtype and e["outcome"] == outcome and request_id in str(e)]

    assert [e["entity"][0]["what"]["reference"] for e in about("read", "0")] == [f"Patient/{pid}"]
    assert [e["entity"][0]["what"]["reference"] for e in about("read", "4")] == ["Patient/missing"]
    (everything,) = about("operation", "0")
    assert everything["entity"][0]["what"]["reference"] == f"Patient/{pid}"
    (audit_search,) = about("search-type", "0")
    assert audit_search["entity"][0]["type"]["code"] == "AuditEvent"
    assert len(about("transaction", "0")) == 1  # the batch request itself (restful-interaction "transaction")


def test_the_reads_of_a_transaction_are_audited_as_the_same_reads_alone(client):
    pid = post(client, PATIENT).json()["id"]
    request_id = "transaction-reads-audit"
    transaction = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"request": {"method": "GET", "url": f"Patient/{pid}"}}, {"request": {"method": "GET", "url": "AuditEvent?action=C"}}],
    }
    headers = {"Content-Type": "application/fhir+json", "X-Request-Id": request_id}
    assert client.post("/fhir", content=orjson.dumps(transaction), headers=headers).status_code == 200
    mine = [e for e in _events(client, _count="50") if request_id in str(e)]
    subtypes = sorted(e["subtype"][0]["code"] for e in mine)
    assert subtypes == ["read", "search-type", "transaction"], subtypes
    read = next(e for e in mine if e["subtype"][0]["code"] == "read")
    assert read["entity"][0]["what"]["reference"] == f"Patient/{pid}" and read["outcome"] == "0"
