"""The rules of Subscription writes (``Pipeline.policies["Subscription"]``).

Before the write (``check``): the resource is read into a :class:`~.spec.Spec` (400/422 for
what the server cannot honour), the writer needs read and search scope on the watched type,
the criteria/filters are run once through the search engine (unknown parameters, chains into
types the client may not search: refused), and a rest-hook endpoint is resolved and checked
(``endpoints.py``: 422 when refused).

Inside the write's transaction (``wrap``): header values and the signing secret are moved out of
the resource into ``subscription_state`` (the stored resource shows ``[redacted]``, so no read,
search, history or export ever shows them), the status is the server's to decide (a client asks
with ``requested``, or ``off``; ``active`` is kept only when the subscription was active and its
channel and criteria did not change; a websocket subscription is active at once: there is no
endpoint to verify), and the subscription's state and work partition are
written with the resource, atomically.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.engine import Connection

from fhir_server.auth.users import CLIENT_PREFIX as CONSOLE_PREFIX
from fhir_server.errors import FhirError, Issue
from fhir_server.service.pipeline import Interaction
from fhir_server.service.results import WriteResult
from fhir_server.service.search import SearchService
from fhir_server.storage import claims
from fhir_server.subscriptions import endpoints, spec, store
from fhir_server.timeutil import now_us

T = TypeVar("T")
CLIENT_STATUSES = ("requested", "active", "off")


class SubscriptionPolicy:
    def __init__(self, search: SearchService, allowed: tuple[endpoints.Network, ...]) -> None:
        self.search = search
        self.allowed = allowed

    async def check(self, i: Interaction, resource: dict[str, Any]) -> None:
        parsed = spec.parse(resource)
        status = resource.get("status")
        if status == "error":
            pass  # allowed only as the unchanged status of a subscription in error (wrap decides)
        elif status not in CLIENT_STATUSES:
            raise FhirError.of(400, "invalid", "Subscription.status must be requested, active or off", "Subscription.status")
        # notifications carry resources of the watched type: the writer must be allowed to find and read them
        i.principal.require(parsed.res_type, "search-type")
        i.principal.require_reads([parsed.res_type])
        if parsed.params:
            try:
                self.search.run(i.base, parsed.res_type, [*parsed.params, ("_count", "1")], strict=True, principal=i.principal)
            except FhirError as exc:
                if exc.status in (401, 403):
                    raise
                issues = [Issue(x.severity, x.code, f"Subscription criteria: {x.diagnostics}", "Subscription.criteria") for x in exc.issues]
                raise FhirError(400, issues) from None
        if parsed.endpoint is not None and status != "off":
            try:
                await endpoints.check(parsed.endpoint, self.allowed)
            except endpoints.Refused as exc:
                raise FhirError.of(422, "security", f"The rest-hook endpoint is refused: {exc}", "Subscription.channel.endpoint") from None

    def wrap(self, conn: Connection, i: Interaction, work: Callable[[Connection], T]) -> T:
        if i.kind == "delete":
            result = work(conn)
            store.remove(conn, i.res_id or "")
            return result
        resource = i.body
        assert isinstance(resource, dict)
        previous = store.get(conn, i.res_id) if i.res_id else None
        secrets = spec.take_secrets(resource, previous.secrets if previous else None)
        parsed = dataclasses.replace(spec.parse(resource), base=i.base.rstrip("/"))
        asked = resource.get("status")
        if asked == "off":
            status = "off"
        elif asked == "error":
            if previous is None or previous.status != "error":
                raise FhirError.of(400, "invalid", "Only the server sets a subscription to error", "Subscription.status")
            status = "error"
        elif parsed.channel == "websocket":
            status = "active"  # no endpoint to verify: the client connects out and is handshaken on each bind
        elif previous is not None and previous.status == "active" and previous.spec == parsed and previous.secrets == secrets:
            status = "active"
        else:
            status = "requested"
        resource["status"] = status
        result = work(conn)
        if not isinstance(result, WriteResult):  # pragma: no cover - create/update always answer one
            return result
        sub_id = result.stored.res_id
        now = now_us()
        store.save(conn, sub_id, status, _owner(i, previous), parsed, secrets, now)
        schedule(conn, sub_id, parsed, status, now)
        return result


def _owner(i: Interaction, previous: store.State | None) -> str | None:
    """The client a subscription delivers as: its writer, except that an operator in the web
    console turning it off or on again does not take it over (a console user is no registered
    client: nothing would be sent)."""
    writer = i.principal.stored_client_id
    if previous is not None and writer is not None and writer.startswith(CONSOLE_PREFIX):
        return previous.client_id
    return writer


def schedule(conn: Connection, sub_id: str, parsed: spec.Spec, status: str, now: int) -> None:
    """The work partition of a subscription in ``status``: due now (handshake, activation,
    pending events) unless it is off or in error (paused)."""
    queue = store.queue_of(parsed)
    other = store.WS_QUEUE if queue == store.REST_QUEUE else store.REST_QUEUE
    claims.drop(conn, other, sub_id)
    claims.set_paused(conn, queue, sub_id, status in ("off", "error"), wanted_us=now)
