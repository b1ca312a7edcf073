"""The websocket channel (Subscriptions R5 Backport IG 1.1.0): for subscribers that cannot take
a webhook (an EMR behind NAT connects out to the server instead).

1. The client asks ``$get-ws-binding-token`` (``operations.py``) for a token: it names the
   client's websocket subscriptions and expires (:data:`TOKEN_SECONDS`).
2. It connects to ``[base]/websocket`` (the ``websocket-url`` the operation returns, also in the
   CapabilityStatement) and sends the text ``bind-with-token <token>``, on the same connection
   as many times as it likes (more subscriptions; a fresh token before the old one expires).
3. Per subscription the server sends a ``handshake`` notification Bundle, then every event not
   yet delivered (or, for a client that acknowledges, not yet acknowledged), then new events and
   heartbeats as they come: the same notification Bundles, in the same order and with the same
   claims as rest-hook (``worker.py``): only the process that holds the socket serves the
   subscription (``Hub.bound``), one notification in flight at a time.

At least once: the IG has no acknowledgement, and a frame written to a connection that then
breaks may never arrive. So each bind replays from the last event the client acknowledged, when
it acknowledges: ``ack <subscription id> <event number>`` (this server's extension, optional).
A client that does not acknowledge gets what was not yet sent, and sees any gap in the event
numbers of the handshake (``events-since-subscription-start``) and fills it with ``$events``.

The newest binding of a subscription wins: a bind bumps the subscription's binding generation
in the database, and a socket bound under an older one (a connection the client already gave up
on, here or in another process) is dropped when its turn comes. A binding ends when its token
expires (the client binds again with a new one, on the same connection); a socket with no
binding left is closed.

Errors are sent as an OperationOutcome text frame; a bad or expired token also closes the socket
(1008, policy violation). Every bind (refused ones too) is recorded as an AuditEvent.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from fhir_server import jsonio
from fhir_server.audit.events import AuditRecord
from fhir_server.audit.recorder import record_in
from fhir_server.errors import Issue, operation_outcome
from fhir_server.storage import claims
from fhir_server.subscriptions import store
from fhir_server.subscriptions.access import subscriber
from fhir_server.timeutil import now_us

log = logging.getLogger("fhir_server.subscriptions")

#: lifetime of a binding token (seconds)
TOKEN_SECONDS = 3600
#: the path of the websocket endpoint under the FHIR base
PATH = "/websocket"
#: a frame that cannot be written in this long means a client that stopped reading: dropped
SEND_TIMEOUT = 10.0
#: websocket close code 1008: policy violation (bad token, nothing left to deliver)
POLICY_VIOLATION = 1008
#: a connection that binds nothing in this long is closed (an open door costs a socket)
BIND_TIMEOUT = 60.0

router = APIRouter()


def websocket_url(base: str) -> str:
    """``ws(s)://`` URL of the endpoint for the FHIR base ``http(s)://host/fhir``."""
    base = base.rstrip("/")
    if base.startswith("https://"):
        return "wss://" + base[len("https://") :] + PATH
    if base.startswith("http://"):
        return "ws://" + base[len("http://") :] + PATH
    return base + PATH


def token_hash(token: str) -> str:
    """What the database keeps of a token (the token itself is only given to the client)."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(eq=False)
class Binding:
    socket: WebSocket
    sub_id: str
    #: the subscription's binding generation when it was bound (``store.bind_ws``)
    generation: int
    expires_us: int
    #: whether this binding's handshake has been sent
    handshaken: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Hub:
    """The websocket bindings this process holds; the worker sends through it."""

    def __init__(self) -> None:
        self._by_sub: dict[str, list[Binding]] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def add(self, binding: Binding) -> None:
        self._by_sub.setdefault(binding.sub_id, []).append(binding)

    def bound(self) -> list[str]:
        """Subscriptions with a live binding here (the worker claims only these websocket
        partitions); bindings whose token expired are dropped."""
        now = now_us()
        for found in list(self._by_sub.values()):
            for b in [b for b in found if b.expires_us <= now]:
                self._drop(b)
        return list(self._by_sub)

    def bound_on(self, socket: WebSocket, sub_id: str) -> bool:
        return any(b.socket is socket for b in self._by_sub.get(sub_id, []))

    def binding(self, sub_id: str, generation: int) -> Binding | None:
        """The live binding of ``sub_id`` under ``generation``; bindings of older generations
        (superseded by a newer bind, here or in another process) and expired ones are dropped."""
        now = now_us()
        found = self._by_sub.get(sub_id, [])
        keep = [b for b in found if b.generation >= generation and b.expires_us > now]
        for b in found:
            if b not in keep:
                self._drop(b)
        return next((b for b in keep if b.generation == generation), None)

    async def send(self, binding: Binding, text: str) -> bool:
        """Write one notification frame; False (and the binding dropped) when the socket is gone."""
        try:
            async with binding.lock, asyncio.timeout(SEND_TIMEOUT):  # not wait_for: see worker._run
                await binding.socket.send_text(text)
        except Exception:  # noqa: BLE001 - closed, reset or not reading: the client binds again
            self.remove_socket(binding.socket)
            return False
        return True

    def _drop(self, binding: Binding) -> None:
        found = self._by_sub.get(binding.sub_id, [])
        if binding in found:
            found.remove(binding)
        if not found:
            self._by_sub.pop(binding.sub_id, None)
        if not any(b.socket is binding.socket for bs in self._by_sub.values() for b in bs):
            # nothing left to deliver on it (superseded or expired): tell the client and close
            task = asyncio.get_running_loop().create_task(_close(binding.socket, "no binding left (superseded or token expired)"))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    def remove_socket(self, socket: WebSocket) -> None:
        for sub_id in list(self._by_sub):
            found = [b for b in self._by_sub[sub_id] if b.socket is not socket]
            if found:
                self._by_sub[sub_id] = found
            else:
                del self._by_sub[sub_id]


async def _close(socket: WebSocket, reason: str) -> None:
    with contextlib.suppress(Exception):
        await socket.close(POLICY_VIOLATION, reason)


def _outcome(code: str, text: str) -> str:
    return jsonio.dumps(operation_outcome([Issue("error", code, text)])).decode()


@router.websocket("/fhir" + PATH)
async def subscription_socket(socket: WebSocket) -> None:
    state = socket.app.state.fhir
    worker = state.subscription_worker
    await socket.accept()
    if worker is None or worker.hub is None:
        await socket.send_text(_outcome("not-supported", "This server process does not deliver notifications"))
        await socket.close(1013, "no delivery worker in this process")
        return
    address = socket.client.host if socket.client is not None else None
    bound = False
    try:
        while True:
            try:
                async with asyncio.timeout(None if bound else BIND_TIMEOUT):  # not wait_for: see worker._run
                    message = await socket.receive()
            except TimeoutError:
                await socket.close(POLICY_VIOLATION, "nothing bound")
                return
            if message["type"] == "websocket.disconnect":
                return
            text = (message.get("text") or "").strip()
            verb, _, rest = text.partition(" ")
            if verb == "bind-with-token":
                if not await _bind(worker, socket, rest.strip(), address):
                    await socket.close(POLICY_VIOLATION, "binding refused")
                    return
                bound = True
            elif verb == "ack":
                await _ack(worker, socket, rest.split())
            else:
                await socket.send_text(_outcome("not-supported", f"Unknown message {verb[:40]!r}: expected 'bind-with-token <token>'"))
    except WebSocketDisconnect:
        pass
    finally:
        worker.hub.remove_socket(socket)


async def _bind(worker: Any, socket: WebSocket, token: str, address: str | None) -> bool:
    """Bind the token's subscriptions to ``socket``; False (after an OperationOutcome frame)
    when the token or one of its subscriptions does not allow it."""
    now = now_us()
    with worker.db.read() as conn:
        found = store.ws_token(conn, token_hash(token), now) if token else None
        states = {s: store.get(conn, s) for s in (found[0] if found else [])}
        principals = {s: subscriber(conn, st.client_id, token_mode=worker.token_mode) for s, st in states.items() if st is not None}
    client_id = found[1] if found else None
    problem: tuple[int, str, str] | None = None
    if found is None:
        problem = (401, "security", "The binding token is unknown or expired: ask $get-ws-binding-token for a new one")
    else:
        for sub_id, st in states.items():
            principal = principals.get(sub_id)
            if st is None or st.spec.channel != "websocket":
                problem = (404, "not-found", f"Subscription/{sub_id} is not a websocket subscription here any more")
            elif st.client_id != client_id:
                problem = (403, "forbidden", f"Subscription/{sub_id} belongs to another client")
            elif principal is None or not principal.readable(st.spec.res_type):
                problem = (403, "forbidden", f"The client may no longer read {st.spec.res_type} (Subscription/{sub_id})")
            elif st.status not in ("requested", "active"):
                problem = (422, "business-rule", f"Subscription/{sub_id} is {st.status}: the client re-activates it first")
            if problem is not None:
                break
    sub_ids = list(states)

    def bind(conn: Any) -> dict[str, int]:
        generations: dict[str, int] = {}
        if problem is None:
            for sub_id in sub_ids:
                generation = store.bind_ws(conn, sub_id)
                if generation is not None:
                    generations[sub_id] = generation
                    claims.set_paused(conn, store.WS_QUEUE, sub_id, False, wanted_us=now_us())  # due now, back-off cleared
        audited: list[str | None] = [*sub_ids] or [None]  # a refused token names no subscription
        for audited_id in audited:
            record_in(
                conn,
                AuditRecord(
                    "operation",
                    problem[0] if problem else 200,
                    "Subscription",
                    audited_id,
                    operation="bind-with-token",
                    client_id=client_id,
                    address=address,
                ),
            )
        return generations

    generations = await worker.write(bind)
    if problem is not None:
        await socket.send_text(_outcome(problem[1], problem[2]))
        return False
    assert found is not None
    for sub_id, generation in generations.items():
        worker.hub.add(Binding(socket, sub_id, generation, found[2]))
    worker.wake()
    return True


async def _ack(worker: Any, socket: WebSocket, parts: list[str]) -> None:
    """``ack <subscription id> <event number>``: only for a subscription bound on this socket."""
    if len(parts) != 2 or not parts[1].isdigit():
        await socket.send_text(_outcome("invalid", "Expected 'ack <subscription id> <event number>'"))
        return
    sub_id, number = parts[0], int(parts[1])
    if not worker.hub.bound_on(socket, sub_id):
        await socket.send_text(_outcome("not-found", f"Subscription/{sub_id} is not bound on this connection"))
        return
    await worker.write(lambda conn: store.acknowledge(conn, sub_id, number))
