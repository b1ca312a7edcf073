"""Several facilities on one server (a district hub of Puskesmas), on SQLite and PostgreSQL: each
bound to a local Organization; an Encounter goes to the facility of its serviceProvider, a
Location to that of its managingOrganization, a Condition to its Encounter's; what no added
facility claims goes to the environment's facility. Each facility has its own SATUSEHAT (here: a
simulator each, with its own organization id and credentials)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from fhir_server.satusehat import store
from fhir_server.satusehat.setup import new_worker
from fhir_server.state import build_state
from fhir_server.timeutil import now_us
from tests.satusehat.conftest import base_records, condition, encounter, location, put
from tests.satusehat.simulator import Simulator
from tests.waiting import async_wait_until

pytestmark = pytest.mark.slow


def _status(state: Any, ref: str) -> str | None:
    with state.db.read() as conn:
        item = store.get(conn, *ref.split("/"))
    return item.status if item is not None else None


def test_resources_are_routed_by_their_organization(quiet, sim):
    client, s = quiet
    other = Simulator(org="200000002", client_id="pkm-b", client_secret="pkm-b-secret").start()
    try:
        with client.app.state.fhir.db.write() as conn:
            store.add_facility(
                conn,
                name="pkm-b",
                local_org="orgB",
                organization_id="200000002",
                url=other.url,
                client_id="pkm-b",
                client_secret="pkm-b-secret",
                created_us=now_us(),
            )
        base_records(client)
        put(client, {"resourceType": "Organization", "id": "orgB", "name": "Puskesmas B"})
        put(client, {**location("poliB"), "managingOrganization": {"reference": "Organization/orgB"}})
        put(
            client,
            encounter("eB", serviceProvider={"reference": "Organization/orgB"}, location=[{"location": {"reference": "Location/poliB"}}]),
        )
        put(client, condition("cB", "eB"))
        put(client, encounter("eA"))
        put(client, condition("cA", "eA"))
        # an Encounter of B in a Location of A: held, SATUSEHAT ids are per organization
        put(client, encounter("eX", serviceProvider={"reference": "Organization/orgB"}))
        state = build_state(s)
        worker = new_worker(state, owner="hub")
        assert worker is not None and set(worker.facilities) == {"default", "pkm-b"}
        refs = ["Encounter/eA", "Condition/cA", "Encounter/eB", "Condition/cB", "Location/poliB", "Location/poli1"]

        async def run() -> None:
            worker.start()
            try:
                await async_wait_until(
                    lambda: all(_status(state, r) == "synced" for r in refs) and _status(state, "Encounter/eX") == "held"
                )
            finally:
                await worker.stop()

        asyncio.run(run())
        assert [e["identifier"][0]["value"] for e in other.resources("Encounter")] == ["eB"]
        assert [e["identifier"][0]["value"] for e in sim.resources("Encounter")] == ["eA"]
        assert [c["identifier"][0]["value"] for c in other.resources("Condition")] == ["cB"]
        assert other.resources("Encounter")[0]["serviceProvider"] == {"reference": "Organization/200000002"}
        with state.db.read() as conn:
            held = store.get(conn, "Encounter", "eX")
        assert held is not None and "belongs to facility 'default'" in (held.last_error or "")
        state.db.dispose()
    finally:
        other.stop()
