"""Fixtures of the subscription tests: the app with a fast worker and 127.0.0.1/32 allowed, on
SQLite and PostgreSQL, emptied between tests; real HTTP receivers on loopback addresses."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhir_server.app import create_app
from fhir_server.config import Settings
from fhir_server.service.access import OPEN
from fhir_server.service.pipeline import Interaction
from fhir_server.subscriptions.spec import PAYLOAD_CONTENT, topic_url
from tests.conftest import BACKENDS, database, empty_tables
from tests.subscriptions.receiver import Receiver

BASE = "http://testserver/fhir"
JSON = {"Content-Type": "application/fhir+json"}


def settings(url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": url,
        "base_url": BASE,
        "subscription_allowed_networks": "127.0.0.1/32",
        "subscription_poll_interval": 0.02,
        "subscription_lease_seconds": 3.0,
        "subscription_retry_base": 0.05,
        "subscription_retry_max": 0.2,
        "subscription_max_failures": 4,
        "export_worker": False,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="session", params=BACKENDS)
def subs_app(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[TestClient]:
    with database(request.param, tmp_path_factory.mktemp("subsdb")) as url:
        app = create_app(settings(url))
        with TestClient(app) as client:
            yield client


@pytest.fixture
def subs(subs_app: TestClient) -> TestClient:
    empty_tables(subs_app.app.state.fhir.db.engine)
    return subs_app


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def topic_subscription(
    endpoint: str,
    res_type: str = "Patient",
    interaction: str | None = None,
    filters: list[str] | None = None,
    content: str = "id-only",
    **channel: Any,
) -> dict[str, Any]:
    sub: dict[str, Any] = {
        "resourceType": "Subscription",
        "meta": {"profile": ["http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription"]},
        "status": "requested",
        "reason": "test",
        "criteria": topic_url(res_type, interaction),
        "channel": {
            "type": "rest-hook",
            "endpoint": endpoint,
            "payload": "application/fhir+json",
            "_payload": {"extension": [{"url": PAYLOAD_CONTENT, "valueCode": content}]},
            **channel,
        },
    }
    if filters:
        sub["_criteria"] = {
            "extension": [
                {"url": "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-filter-criteria", "valueString": f}
                for f in filters
            ]
        }
    return sub


def criteria_subscription(endpoint: str, criteria: str, payload: str | None = None, header: list[str] | None = None) -> dict[str, Any]:
    channel: dict[str, Any] = {"type": "rest-hook", "endpoint": endpoint}
    if payload:
        channel["payload"] = payload
    if header:
        channel["header"] = header
    return {"resourceType": "Subscription", "status": "requested", "reason": "test", "criteria": criteria, "channel": channel}


def patient(family: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "name": [{"family": family}], **extra}


async def drain(worker: Any) -> None:
    """Run a worker's rounds by hand (``SubscriptionWorker.run_once``) until it finds nothing
    more to do, each round's deliveries finished."""
    while True:
        busy = await worker.run_once()
        await worker.wait_idle()
        if not busy:
            return


async def create(state: Any, res_type: str, body: dict[str, Any]) -> Any:
    """Create ``body`` through ``state``'s pipeline (a ServerState of its own, no HTTP), as the server."""
    return await state.pipeline.handle(Interaction("create", BASE, OPEN, res_type, body=body))
