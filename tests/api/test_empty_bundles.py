"""Bundles without entries (json.html: "arrays are never empty"): a search that finds nothing,
an empty history at each level, ``_summary=count`` and an empty batch-response leave ``entry``
out, and such a Bundle, sent back to the server, is accepted like any other."""

from __future__ import annotations

import pytest

from tests.api.test_rest_crud import PATIENT, post
from tests.bundles import empty_arrays

FUTURE = "9999-12-31T23:59:59.999999Z"

EMPTY_READS = [
    ("/fhir/Patient", {"family": "NoSuchFamily"}),
    ("/fhir/Patient", {"_summary": "count"}),
    ("/fhir/Observation", {"_count": "0"}),
    ("/fhir", {"_type": "Patient,Observation", "_id": "nosuch"}),
    ("/fhir/_history", {}),
    ("/fhir/Patient/_history", {}),
    ("/fhir/_history", {"_since": FUTURE}),
    ("/fhir/Subscription/$status", {}),  # built apart from service/bundles
]


def _empty(client, path: str, params: dict[str, str]) -> dict:
    r = client.get(path, params=params)
    assert r.status_code == 200, r.text
    bundle = r.json()
    assert bundle["resourceType"] == "Bundle"
    assert "entry" not in bundle
    assert empty_arrays(bundle) == []
    return bundle


@pytest.mark.parametrize(("path", "params"), EMPTY_READS)
def test_a_bundle_without_entries_has_no_empty_array(client, path, params):
    _empty(client, path, params)


def test_an_empty_instance_history_has_no_empty_array(client):
    pid = post(client, PATIENT).json()["id"]
    bundle = _empty(client, f"/fhir/Patient/{pid}/_history", {"_since": FUTURE})
    assert bundle["type"] == "history"


def test_an_empty_batch_is_answered_without_an_empty_array(client):
    r = client.post("/fhir", json={"resourceType": "Bundle", "type": "batch"})
    assert r.status_code == 200, r.text
    bundle = r.json()
    assert bundle["type"] == "batch-response"
    assert "entry" not in bundle and empty_arrays(bundle) == []


@pytest.mark.parametrize("kind", ["batch", "transaction"])
def test_an_empty_bundle_sent_back_is_accepted(client, kind):
    """An empty answer, its type turned into a batch or transaction, is a valid request."""
    bundle = _empty(client, "/fhir/Patient", {"family": "NoSuchFamily"})
    request = {k: v for k, v in bundle.items() if k != "total"} | {"type": kind}  # bdl-1: total only in a searchset or history
    r = client.post("/fhir", json=request)
    assert r.status_code == 200, r.text
    assert r.json()["type"] == f"{kind}-response"


@pytest.mark.parametrize(("path", "params"), EMPTY_READS[:3] + EMPTY_READS[-1:])
def test_an_empty_searchset_is_a_valid_bundle_resource(client, path, params):
    """Stored as a Bundle resource (the same validation as every write) and checked by $validate."""
    bundle = _empty(client, path, params)
    r = client.post("/fhir/Bundle", json={k: v for k, v in bundle.items() if k != "id"})
    assert r.status_code == 201, r.text
    r = client.post("/fhir/Bundle/$validate", json=bundle)
    assert r.status_code == 200, r.text
    assert all(i["severity"] not in ("error", "fatal") for i in r.json()["issue"])
