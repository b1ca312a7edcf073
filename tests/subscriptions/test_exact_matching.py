"""Each change is judged by the version it produced, even when the resource changed again before
the matcher ran (SQLite and PostgreSQL). The worker is driven by hand so the later change is
surely committed first: an update that stops a resource matching does not hide the earlier
matching version, and a version that did not match is not notified because a later one does."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhir_server.app import create_app
from fhir_server.state import build_state
from fhir_server.subscriptions.setup import new_worker
from tests.conftest import BACKENDS, database
from tests.subscriptions.conftest import JSON, patient, settings, topic_subscription
from tests.subscriptions.receiver import Receiver, status_of
from tests.subscriptions.test_delivery_cost import drain


@pytest.fixture(scope="module", params=BACKENDS)
def quiet(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, str]]:
    with (
        database(request.param, tmp_path_factory.mktemp("exactdb")) as url,
        TestClient(create_app(settings(url, subscription_worker=False))) as client,
    ):
        yield client, url


def _focus(receiver: Receiver) -> list[tuple[str, str]]:
    """(method, focus reference tail) of every event received."""
    out = []
    for b in receiver.of_type("event-notification"):
        methods = [e["request"]["method"] for e in b["entry"][1:]]
        refs = [e["focus"]["reference"].split("/Patient/")[1] for e in status_of(b)["events"]]
        out += list(zip(methods, refs, strict=True))
    return out


def _scenario(quiet: tuple[TestClient, str], family: str, writes: Any) -> list[tuple[str, str]]:
    client, url = quiet
    receiver = Receiver().start()
    state = build_state(settings(url))
    try:
        sub = topic_subscription(receiver.url, "Patient", filters=[f"family:exact={family}"])  # create, update and delete
        assert client.post("/fhir/Subscription", json=sub, headers=JSON).status_code == 201

        async def run() -> None:
            worker = new_worker(state, owner=f"exact-{family}")
            try:
                await drain(worker)  # the handshake
                writes(client)  # every change committed before the matcher looks at any of them
                await drain(worker)
            finally:
                await worker.stop()

        asyncio.run(run())
        return _focus(receiver)
    finally:
        receiver.stop()
        state.db.dispose()


def _update(client: TestClient, created: dict[str, Any], family: str) -> dict[str, Any]:
    changed = {**created, "name": [{"family": family}]}
    r = client.put(f"/fhir/Patient/{created['id']}", json=changed, headers=JSON)
    assert r.status_code == 200, r.text
    return r.json()


def test_a_matching_version_changed_away_before_matching_is_still_notified(quiet):
    made: dict[str, Any] = {}

    def writes(client: TestClient) -> None:
        made.update(client.post("/fhir/Patient", json=patient("ExactSari"), headers=JSON).json())
        _update(client, made, "ExactBudi")  # no longer matches, before the matcher ran

    assert _scenario(quiet, "ExactSari", writes) == [("POST", f"{made['id']}/_history/1")]
    # the probe's transaction was rolled back: the resource is as it was written last, and found so
    client = quiet[0]
    now = client.get(f"/fhir/Patient/{made['id']}").json()
    assert now["meta"]["versionId"] == "2" and now["name"][0]["family"] == "ExactBudi"
    assert client.get("/fhir/Patient", params={"family:exact": "ExactSari"}).json().get("total") == 0
    assert client.get("/fhir/Patient", params={"family:exact": "ExactBudi"}).json().get("total") == 1


def test_a_version_that_did_not_match_is_not_notified_because_a_later_one_does(quiet):
    made: dict[str, Any] = {}

    def writes(client: TestClient) -> None:
        made.update(client.post("/fhir/Patient", json=patient("ExactNone"), headers=JSON).json())
        _update(client, made, "ExactDewi")  # matches only from version 2 on
        _update(client, {**made, "gender": "female"}, "ExactDewi")  # version 3: matches too

    assert _scenario(quiet, "ExactDewi", writes) == [("PUT", f"{made['id']}/_history/2"), ("PUT", f"{made['id']}/_history/3")]


def test_a_matching_version_deleted_before_matching_is_still_notified(quiet):
    made: dict[str, Any] = {}

    def writes(client: TestClient) -> None:
        made.update(client.post("/fhir/Patient", json=patient("ExactGone"), headers=JSON).json())
        assert client.delete(f"/fhir/Patient/{made['id']}").status_code == 204

    # the delete itself is not notified to a filtered subscription (a deleted resource matches no search)
    assert _scenario(quiet, "ExactGone", writes) == [("POST", f"{made['id']}/_history/1")]
    assert quiet[0].get(f"/fhir/Patient/{made['id']}").status_code == 410
