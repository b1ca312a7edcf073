"""The audit row of an HTTP request, built on the recorder's thread.

On the request path the audit middleware only queues a plain tuple of raw
values it picks from the ASGI scope (:data:`RawRequest`); classifying the
request, decoding and cleaning the values happen here, off the request path,
in one function per event (no per-event objects, no properties).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from fhir_server.storage.audit_tables import ADDRESS_MAX, QUERY_MAX, REQUEST_ID_MAX, USER_AGENT_MAX

from .events import ACTIONS, storable

#: (time.time_ns(), HTTP status, method, path, query string, User-Agent, X-Request-Id,
#: client address, client id, organization id): atomic values only, so that the
#: garbage collector stops tracking the tuple at its first pass (see api.audit_middleware)
RawRequest = tuple[int, int, str, str, bytes, bytes | None, bytes | None, str | None, str | None, str | None]

_KIND_OF_TYPE = {"GET": "search-type", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
_KIND_OF_ID = {"GET": "read", "HEAD": "read", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


def classify(method: str, path: str) -> tuple[str, str | None, str | None, str | None]:
    """(interaction, resource type, id, operation) of a request under ``/fhir``."""
    parts = path.split("/")[2:]  # after "" and "fhir"
    if "" in parts:
        parts = [p for p in parts if p]
    if "%" in path:
        parts = [unquote(p) for p in parts]
    if "$" in path:
        operation = next((p[1:] for p in parts if p.startswith("$")), None)
        if operation is not None:
            head = parts[: parts.index("$" + operation)]
            return "operation", (head[0] if head else None), (head[1] if len(head) > 1 else None), operation
    if not parts:
        return ("transaction" if method == "POST" else "search-system"), None, None, None
    if parts[0] == "_history":
        return "history-system", None, None, None
    res_type = parts[0]
    if len(parts) == 1:
        return _KIND_OF_TYPE.get(method, "read"), res_type, None, None
    if parts[1] == "_search":
        return "search-type", res_type, None, None
    if parts[1] == "_history":
        return "history-type", res_type, None, None
    res_id = parts[1]
    if len(parts) >= 3 and parts[2] == "_history":
        return ("vread" if len(parts) > 3 else "history-instance"), res_type, res_id, None
    return _KIND_OF_ID.get(method, "read"), res_type, res_id, None


def request_row(raw: RawRequest) -> tuple[Any, ...]:
    """The ``audit_events`` row of a queued request, laid out like ``events.to_tuple``."""
    time_ns, status, method, path, query_bytes, ua_bytes, request_id_bytes, address, client_id, organization_id = raw
    parts = path.split("/")
    if len(parts) == 4 and (p2 := parts[2]) and (p3 := parts[3]) and p2[0] != "_" and p3[0] != "_" \
            and "%" not in path and "$" not in path:  # /fhir/Type/id, the most frequent (what classify says)
        interaction, res_type, res_id, operation = _KIND_OF_ID.get(method, "read"), p2, p3, None
    else:
        interaction, res_type, res_id, operation = classify(method, path)
    user_agent = ua_bytes.decode("latin-1") if ua_bytes is not None else None
    # the usual case (ASCII, no NUL) needs at most a cut; one check over all the values
    joined = f"{res_type}{res_id}{client_id}{organization_id}{address}{user_agent}"
    if joined.isascii() and "\x00" not in joined:
        ua_len = len(user_agent) if user_agent is not None else 0
        if len(joined) - ua_len > 64:  # one of the others may be over its limit (64 or more)
            res_type, res_id = res_type and res_type[:64], res_id and res_id[:64]
            client_id, organization_id = client_id and client_id[:128], organization_id and organization_id[:64]
            address = address and address[:ADDRESS_MAX]
        if ua_len > USER_AGENT_MAX:
            user_agent = user_agent[:USER_AGENT_MAX]  # type: ignore[index]
    else:
        res_type = res_type and storable(res_type, 64)
        res_id = res_id and storable(res_id, 64)
        client_id = client_id and storable(client_id, 128)
        organization_id = organization_id and storable(organization_id, 64)
        address = address and storable(address, ADDRESS_MAX)
        user_agent = user_agent and storable(user_agent, USER_AGENT_MAX)
    row = (time_ns // 1000, interaction, ACTIONS[interaction], status, res_type, res_id, client_id,
           organization_id, address, user_agent)
    if query_bytes or operation or request_id_bytes:
        query = storable(query_bytes.decode("latin-1"), QUERY_MAX) if query_bytes else None
        return row + (
            query,
            storable("$" + operation, 64) if operation else None,
            storable(request_id_bytes.decode("latin-1"), REQUEST_ID_MAX) if request_id_bytes else None,
            None,  # event_id: derived from the row (see .ids)
        )
    return row
