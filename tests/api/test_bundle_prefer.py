"""``Prefer: return=`` on a batch or transaction applies to each entry as to the request alone
(http.html#ops, http.html#transaction-response): ``minimal`` leaves a write entry's resource out,
``OperationOutcome`` answers each write entry with an OperationOutcome in ``response.outcome``
(its warnings, or what it stored) and no resource, ``representation`` (the default) with the
resource. A read entry answers its result whatever the preference (it has no other). Before,
``return=OperationOutcome`` was answered as ``representation``: resources, and no outcome.
"""

from __future__ import annotations

import orjson
import pytest

from tests.api.test_validate_parity import UNKNOWN_CITY
from tests.patches import replace_code

FHIR_JSON = {"Content-Type": "application/fhir+json"}
PATIENT = {"resourceType": "Patient", "gender": "female", "name": [{"family": "Aminah"}]}


def _create(client) -> str:
    r = client.post("/fhir/Patient", content=orjson.dumps(PATIENT), headers=FHIR_JSON)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _bundle(client, kind: str) -> dict:
    """A create (with a warning: a city code of no such city), an update, a patch, a delete and a read."""
    updated, patched, deleted = _create(client), _create(client), _create(client)
    patch = replace_code("Patient.gender", "male")
    return {
        "resourceType": "Bundle",
        "type": kind,
        "entry": [
            {
                "fullUrl": "urn:uuid:8c0f4a9e-2f4e-4a55-9d2a-6a2b1f0d9e11",
                "resource": UNKNOWN_CITY,
                "request": {"method": "POST", "url": "Patient"},
            },
            {"resource": {**PATIENT, "id": updated, "gender": "other"}, "request": {"method": "PUT", "url": f"Patient/{updated}"}},
            {"resource": patch, "request": {"method": "PATCH", "url": f"Patient/{patched}"}},
            {"request": {"method": "DELETE", "url": f"Patient/{deleted}"}},
            {"request": {"method": "GET", "url": f"Patient/{updated}"}},
        ],
    }


def _post(client, bundle: dict, prefer: str | None) -> list[dict]:
    headers = {**FHIR_JSON, **({"Prefer": prefer} if prefer else {})}
    r = client.post("/fhir", content=orjson.dumps(bundle), headers=headers)
    assert r.status_code == 200, r.text
    return r.json()["entry"]


def _diagnostics(entry: dict) -> list[tuple[str, str]]:
    return [(i["severity"], i.get("diagnostics", "")) for i in entry["response"]["outcome"]["issue"]]


@pytest.mark.parametrize("kind", ["batch", "transaction"])
@pytest.mark.parametrize("prefer", ["return=OperationOutcome", "return = operationoutcome"])
def test_return_operation_outcome_puts_an_outcome_in_each_write_entry(client, kind, prefer):
    bundle = _bundle(client, kind)
    created, updated, patched, deleted, read = _post(client, bundle, prefer)
    for e in (created, updated, patched, deleted):
        assert "resource" not in e and "fullUrl" not in e
        assert e["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert created["response"]["status"].startswith("201") and created["response"]["location"]
    # the write's warnings, as the create alone answers them (tests/api/test_validate_parity.py)
    assert {s for s, _ in _diagnostics(created)} == {"warning"}
    alone = client.post("/fhir/Patient", content=orjson.dumps(UNKNOWN_CITY), headers={**FHIR_JSON, "Prefer": "return=OperationOutcome"})
    assert [i["diagnostics"] for i in alone.json()["issue"]] == [d for _, d in _diagnostics(created)]
    # no warning: what was stored, as on the routes
    assert _diagnostics(updated) == [("information", f"{updated['response']['location']} stored (200)")]
    assert _diagnostics(patched) == [("information", f"{patched['response']['location']} stored (200)")]
    pid = bundle["entry"][3]["request"]["url"]
    assert deleted["response"]["status"].startswith("204") and _diagnostics(deleted) == [("information", f"{pid} deleted")]
    # a read answers what it read
    assert read["resource"]["gender"] == "other" and "outcome" not in read["response"]


@pytest.mark.parametrize("kind", ["batch", "transaction"])
def test_return_minimal_leaves_write_resources_out_but_answers_reads(client, kind):
    created, updated, patched, deleted, read = _post(client, _bundle(client, kind), "return=minimal")
    for e in (created, updated, patched, deleted):
        assert "resource" not in e and "outcome" not in e["response"]
    assert created["response"]["location"] and updated["response"]["etag"] == 'W/"2"'
    assert read["resource"]["gender"] == "other"


@pytest.mark.parametrize("kind", ["batch", "transaction"])
@pytest.mark.parametrize("prefer", [None, "return=representation", "return=everything"])
def test_return_representation_answers_the_resources(client, kind, prefer):
    created, updated, patched, deleted, read = _post(client, _bundle(client, kind), prefer)
    assert created["resource"]["resourceType"] == "Patient" and created["fullUrl"].endswith(created["resource"]["id"])
    assert updated["resource"]["gender"] == "other" and patched["resource"]["gender"] == "male"
    assert "resource" not in deleted
    assert all("outcome" not in e["response"] for e in (created, updated, patched, deleted, read))


def test_a_failed_batch_entry_keeps_its_error_as_outcome(client):
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"resource": {"resourceType": "Patient", "gender": "nope"}, "request": {"method": "POST", "url": "Patient"}},
            {"resource": PATIENT, "request": {"method": "POST", "url": "Patient"}},
        ],
    }
    failed, ok = _post(client, bundle, "return=OperationOutcome")
    assert failed["response"]["status"].startswith(("400", "422"))
    assert {i["severity"] for i in failed["response"]["outcome"]["issue"]} == {"error"}
    assert _diagnostics(ok) == [("information", f"{ok['response']['location']} stored (201)")]


def test_a_transaction_parses_each_entry_once(client, monkeypatch):
    """The pipeline refused policed writes and audited the GET entries by parsing every entry
    again, twice more than the bundle service did: one parse now serves every step."""
    from fhir_server.service import pipeline, transaction

    calls: list[int] = []
    real = transaction.parse_entry

    def counting(base, index, raw):
        calls.append(index)
        return real(base, index, raw)

    monkeypatch.setattr(transaction, "parse_entry", counting)
    monkeypatch.setattr(pipeline, "parse_entry", counting)
    pid = _create(client)
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": PATIENT, "request": {"method": "POST", "url": "Patient"}},
            {"request": {"method": "GET", "url": f"Patient/{pid}"}},
        ],
    }
    read = _post(client, bundle, None)[1]
    assert read["resource"]["id"] == pid
    assert sorted(calls) == [0, 1]
