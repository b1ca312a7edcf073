"""The websocket channel (Backport IG 1.1.0: ``$get-ws-binding-token``, ``bind-with-token``) with a
real websocket client (``websockets``) against uvicorn on a loopback port, SQLite and PostgreSQL:
handshake then events in order, heartbeats, replay after a reconnect (from the last acknowledged
event, or the last sent), the newest binding wins, only the process holding the socket delivers,
bad and expired tokens, and in token mode the token only for the owning client with read scope."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from fhir_server.auth.clients import add_client, revoke_client
from fhir_server.state import build_state
from fhir_server.subscriptions import store, websocket
from fhir_server.subscriptions.setup import new_worker
from fhir_server.subscriptions.spec import HEARTBEAT_PERIOD, PAYLOAD_CONTENT, topic_url
from fhir_server.timeutil import now_us
from tests.conftest import BACKENDS, database
from tests.subscriptions.conftest import patient, settings
from tests.subscriptions.live import Live, serving
from tests.subscriptions.receiver import status_of

JSON = {"Content-Type": "application/fhir+json"}
WAIT = 30.0


@pytest.fixture(scope="module", params=BACKENDS)
def live(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with database(request.param, tmp_path_factory.mktemp("wsdb")) as url, serving(settings(url, base_url="")) as server:
        yield server


def ws_subscription(family: str, content: str = "id-only", **channel: Any) -> dict[str, Any]:
    return {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "EMR behind NAT",
        "criteria": topic_url("Patient", "create"),
        "_criteria": {
            "extension": [
                {
                    "url": "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-filter-criteria",
                    "valueString": f"Patient?family:exact={family}",
                }
            ]
        },
        "channel": {
            "type": "websocket",
            "payload": "application/fhir+json",
            "_payload": {"extension": [{"url": PAYLOAD_CONTENT, "valueCode": content}]},
            **channel,
        },
    }


def _param(parameters: dict[str, Any], name: str) -> Any:
    return next(v for p in parameters["parameter"] if p["name"] == name for k, v in p.items() if k.startswith("value"))


async def _token(http: httpx.AsyncClient, sub_id: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    r = await http.get(f"/Subscription/{sub_id}/$get-ws-binding-token", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


async def _recv(ws: ClientConnection) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), WAIT))


async def _events(ws: ClientConnection, count: int) -> tuple[list[int], list[dict[str, Any]]]:
    """Event numbers of the event notifications received until ``count`` events came (and the Bundles)."""
    numbers: list[int] = []
    bundles: list[dict[str, Any]] = []
    while len(numbers) < count:
        bundle = await _recv(ws)
        st = status_of(bundle)
        if st["type"] == "event-notification":
            numbers += [int(e["event-number"]) for e in st["events"]]
            bundles.append(bundle)
    return numbers, bundles


async def _create(http: httpx.AsyncClient, family: str, n: int = 1) -> list[str]:
    ids = []
    for _ in range(n):
        r = await http.post("/Patient", json=patient(family), headers=JSON)
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    return ids


def _run(live: Live, scenario: Any) -> None:
    async def main() -> None:
        async with httpx.AsyncClient(base_url=live.base, timeout=WAIT) as http:
            await scenario(http)

    asyncio.run(main())


def test_bind_handshake_then_events_in_order_and_the_capability_statement(live):
    async def scenario(http: httpx.AsyncClient) -> None:
        cap = (await http.get("/metadata")).json()
        sub_entry = next(r for r in cap["rest"][0]["resource"] if r["type"] == "Subscription")
        assert {e["valueCode"] for e in sub_entry["extension"] if e["url"].endswith("subscription-channel-type")} == {
            "rest-hook",
            "websocket",
        }
        ops = {o["name"]: o["definition"] for o in sub_entry["operation"]}
        assert ops["get-ws-binding-token"] == (
            "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-get-ws-binding-token"
        )
        advertised = next(e["valueUri"] for e in cap["rest"][0]["extension"] if e["url"].endswith("capabilitystatement-websocket"))

        created = await http.post("/Subscription", json=ws_subscription("WsOrder"), headers=JSON)
        assert created.status_code == 201, created.text
        sub = created.json()
        assert sub["status"] == "active"  # nothing to verify: the client connects out
        token = await _token(http, sub["id"])
        url = _param(token, "websocket-url")
        assert url == advertised == f"ws://127.0.0.1:{live.port}/fhir/websocket"
        assert _param(token, "subscription") == sub["id"] and _param(token, "expiration")
        before = await _create(http, "WsOrder")  # an event before anyone is bound: kept for the client
        async with connect(url) as ws:
            await ws.send(f"bind-with-token {_param(token, 'token')}")
            hs = status_of(await _recv(ws))
            assert hs["type"] == "handshake" and hs["status"] == "active"
            assert hs["subscription"]["reference"].endswith(f"/Subscription/{sub['id']}")
            ids = before + await _create(http, "WsOrder", 3)
            await _create(http, "WsOther")  # not matching: not sent
            numbers, bundles = await _events(ws, 4)
            assert numbers == [1, 2, 3, 4]
            focus = [e["fullUrl"].rsplit("/", 1)[-1] for b in bundles for e in b["entry"][1:]]
            assert focus == ids
            await ws.send("hello")  # unknown messages are answered, the connection stays
            answer = await _recv(ws)
            assert answer["resourceType"] == "OperationOutcome"
            await _create(http, "WsOrder")
            assert (await _events(ws, 1))[0] == [5]

    _run(live, scenario)


def test_a_reconnect_replays_from_the_last_acknowledged_event_or_the_last_sent(live):
    async def scenario(http: httpx.AsyncClient) -> None:
        acking = (await http.post("/Subscription", json=ws_subscription("WsAck"), headers=JSON)).json()["id"]
        silent = (await http.post("/Subscription", json=ws_subscription("WsSilent"), headers=JSON)).json()["id"]
        token = _param(await _token(http, acking), "token")
        silent_token = _param(await _token(http, silent), "token")
        url = websocket.websocket_url(live.base)
        async with connect(url) as ws:
            await ws.send(f"bind-with-token {token}")
            assert status_of(await _recv(ws))["type"] == "handshake"
            await _create(http, "WsAck", 2)
            assert (await _events(ws, 2))[0] == [1, 2]
            await ws.send(f"ack {acking} 2")
            await _create(http, "WsAck")
            assert (await _events(ws, 1))[0] == [3]  # received, never acknowledged: the connection "breaks"
        await _create(http, "WsAck")  # while nobody is connected
        async with connect(url) as ws:
            await ws.send(f"bind-with-token {token}")
            hs = status_of(await _recv(ws))
            assert hs["type"] == "handshake" and hs["events-since-subscription-start"] == "4"
            assert (await _events(ws, 2))[0] == [3, 4]  # from the last acknowledged event on

        async with connect(url) as ws:  # a client that never acknowledges: from the last one sent
            await ws.send(f"bind-with-token {silent_token}")
            assert status_of(await _recv(ws))["type"] == "handshake"
            await _create(http, "WsSilent")
            assert (await _events(ws, 1))[0] == [1]
        await _create(http, "WsSilent")
        async with connect(url) as ws:
            await ws.send(f"bind-with-token {silent_token}")
            assert status_of(await _recv(ws))["events-since-subscription-start"] == "2"
            assert (await _events(ws, 1))[0] == [2]

    _run(live, scenario)


def test_the_newest_binding_wins_and_the_old_socket_is_closed(live):
    async def scenario(http: httpx.AsyncClient) -> None:
        sub_id = (await http.post("/Subscription", json=ws_subscription("WsTwice"), headers=JSON)).json()["id"]
        token = _param(await _token(http, sub_id), "token")
        url = websocket.websocket_url(live.base)
        async with connect(url) as old, connect(url) as new:
            await old.send(f"bind-with-token {token}")
            assert status_of(await _recv(old))["type"] == "handshake"
            await new.send(f"bind-with-token {token}")
            assert status_of(await _recv(new))["type"] == "handshake"
            await _create(http, "WsTwice", 2)
            assert (await _events(new, 2))[0] == [1, 2]
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(old.recv(), WAIT)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == websocket.POLICY_VIOLATION

    _run(live, scenario)


def test_heartbeats_on_the_socket(live):
    async def scenario(http: httpx.AsyncClient) -> None:
        beat = [{"url": HEARTBEAT_PERIOD, "valueUnsignedInt": 1}]
        sub_id = (await http.post("/Subscription", json=ws_subscription("WsBeat", extension=beat), headers=JSON)).json()["id"]
        token = _param(await _token(http, sub_id), "token")
        async with connect(websocket.websocket_url(live.base)) as ws:
            await ws.send(f"bind-with-token {token}")
            kinds = [status_of(await _recv(ws))["type"] for _ in range(3)]
            assert kinds == ["handshake", "heartbeat", "heartbeat"]

    _run(live, scenario)


def test_only_the_process_holding_the_socket_delivers(live):
    """A second worker on the same database (another process) may match the changes, but never
    serves the websocket subscription: every event reaches the socket once, in order."""
    state = live.app.state.fhir
    other_state = build_state(state.settings)

    async def scenario(http: httpx.AsyncClient) -> None:
        other = new_worker(other_state, owner="no-sockets").start()
        try:
            sub_id = (await http.post("/Subscription", json=ws_subscription("WsElsewhere"), headers=JSON)).json()["id"]
            token = _param(await _token(http, sub_id), "token")
            async with connect(websocket.websocket_url(live.base)) as ws:
                await ws.send(f"bind-with-token {token}")
                assert status_of(await _recv(ws))["type"] == "handshake"
                await _create(http, "WsElsewhere", 6)
                assert (await _events(ws, 6))[0] == [1, 2, 3, 4, 5, 6]
            with other_state.db.read() as conn:
                attempts = store.attempts(conn, sub_id, 50)
            assert attempts and all("no-sockets" not in (a["error"] or "") for a in attempts)
        finally:
            await other.stop()

    try:
        _run(live, scenario)
    finally:
        other_state.db.dispose()


def test_bad_and_expired_tokens_are_refused_and_audited(live):
    state = live.app.state.fhir

    async def scenario(http: httpx.AsyncClient) -> None:
        sub_id = (await http.post("/Subscription", json=ws_subscription("WsExpired"), headers=JSON)).json()["id"]
        with state.db.write() as conn:
            store.add_ws_token(conn, websocket.token_hash("expired-token"), [sub_id], None, now_us() - 1_000_000)
        for token in ("not-a-token", "expired-token"):
            async with connect(websocket.websocket_url(live.base)) as ws:
                await ws.send(f"bind-with-token {token}")
                outcome = await _recv(ws)
                assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0]["code"] == "security"
                with pytest.raises(ConnectionClosed) as closed:
                    await asyncio.wait_for(ws.recv(), WAIT)
                assert closed.value.rcvd is not None and closed.value.rcvd.code == websocket.POLICY_VIOLATION
        # a rest-hook subscription has no binding token; an R4 criteria websocket subscription is refused
        refused = await http.post(
            "/Subscription",
            json={
                "resourceType": "Subscription",
                "status": "requested",
                "reason": "x",
                "criteria": "Patient?family=x",
                "channel": {"type": "websocket"},
            },
            headers=JSON,
        )
        assert refused.status_code == 422
        audited = (await http.get("/AuditEvent", params={"subtype": "bind-with-token"})).json()
        assert audited.get("total", len(audited.get("entry", []))) >= 2

    _run(live, scenario)


# -- token mode ----------------------------------------------------------------------------


@pytest.fixture(scope="module", params=BACKENDS)
def secured(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with database(request.param, tmp_path_factory.mktemp("wstok")) as url, serving(settings(url, base_url="", auth="token")) as server:
        yield server


async def _client(live: Live, http: httpx.AsyncClient, scopes: str) -> dict[str, str]:
    with live.app.state.fhir.db.write() as conn:
        cid, secret = add_client(conn, name="EMR", scopes=scopes)
    r = await http.post(
        "/auth/token", data={"grant_type": "client_credentials", "client_id": cid, "client_secret": secret, "scope": scopes}
    )
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}", "X-Client": cid, **JSON}


def test_binding_tokens_only_for_the_owning_client_with_read_scope(secured):
    async def scenario(http: httpx.AsyncClient) -> None:
        owner = await _client(secured, http, "system/Subscription.cruds system/Patient.crs")
        other = await _client(secured, http, "system/Subscription.cruds system/Patient.crs")
        no_subscription_read = await _client(secured, http, "system/Subscription.c system/Patient.rs")
        no_patient_read = await _client(secured, http, "system/Subscription.rs")
        created = await http.post("/Subscription", json=ws_subscription("WsSecure"), headers=owner)
        assert created.status_code == 201, created.text
        sub_id = created.json()["id"]
        for headers, status in ((no_subscription_read, 403), (no_patient_read, 403), (other, 403), ({}, 401)):
            r = await http.get(f"/Subscription/{sub_id}/$get-ws-binding-token", headers=headers)
            assert r.status_code == status, (headers, r.text)
            assert r.json()["resourceType"] == "OperationOutcome"
        r = await http.get("/Subscription/$get-ws-binding-token", headers=other)  # type level: none of its own
        assert r.status_code == 404
        token = await _token(http, sub_id, owner)
        typed = await http.post(
            "/Subscription/$get-ws-binding-token",
            json={"resourceType": "Parameters", "parameter": [{"name": "id", "valueId": sub_id}]},
            headers=owner,
        )
        assert typed.status_code == 200 and _param(typed.json(), "subscription") == sub_id
        async with connect(_param(token, "websocket-url")) as ws:  # the token is the credential on the socket
            await ws.send(f"bind-with-token {_param(token, 'token')}")
            assert status_of(await _recv(ws))["type"] == "handshake"
            r = await http.post("/Patient", json=patient("WsSecure"), headers=owner)
            assert r.status_code == 201
            assert (await _events(ws, 1))[0] == [1]
        # a binding token is checked again at every bind: the owner revoked meanwhile binds nothing
        with secured.app.state.fhir.db.write() as conn:
            revoke_client(conn, owner["X-Client"])
        async with connect(_param(token, "websocket-url")) as ws:
            await ws.send(f"bind-with-token {_param(token, 'token')}")
            outcome = await _recv(ws)
            assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0]["code"] == "forbidden"
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), WAIT)

    _run(secured, scenario)
