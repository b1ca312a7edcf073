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

from .events import ACTIONS, storable, stored_client_id

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
    if parts[0] == "_search":
        return "search-system", None, None, None
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
    if len(parts) >= 3 and (method in ("GET", "HEAD") or (method == "POST" and parts[-1] == "_search")):
        # a search in the compartment of Type/id: the compartment is what it looks into
        return ("search-system" if parts[2] in ("*", "_search") else "search-type"), res_type, res_id, None
    return _KIND_OF_ID.get(method, "read"), res_type, res_id, None


def audited_query(interaction: str, res_id: str | None, path: str, query: str) -> str:
    """The query an AuditEvent keeps: the query string, or for a search in a compartment (whose
    entity is the compartment, ``Patient/1``) what it searched there too: ``Encounter?status=x``,
    ``*?_type=...`` (as the relative URL after the compartment)."""
    if res_id is None or not interaction.startswith("search"):
        return query
    parts = [p for p in path.split("/") if p][3:]  # after "fhir", the type and the id
    searched = "*" if not parts or parts[0] in ("*", "_search") else parts[0]
    return f"{searched}?{query}" if query else searched


#: the cleaned (user agent, address, client id, organization id) of their raw values: the same few
#: for every request of a client, so cleaned once, not once per event. Bounded: cleared when full,
#: and a User-Agent longer than it is stored (a hostile one, all different) is never a key.
_CLEANED: dict[tuple[bytes | None, str | None, str | None, str | None], tuple[str | None, ...]] = {}
_CLEANED_MAX = 4096


def _cleaned(raw: tuple[bytes | None, str | None, str | None, str | None]) -> tuple[str | None, ...]:
    ua_bytes, address, client_id, organization_id = raw
    cleaned = (
        storable(ua_bytes.decode("latin-1"), USER_AGENT_MAX) if ua_bytes is not None else None,
        storable(address, ADDRESS_MAX),
        stored_client_id(client_id),
        storable(organization_id, 64),
    )
    if ua_bytes is None or len(ua_bytes) <= USER_AGENT_MAX:
        if len(_CLEANED) >= _CLEANED_MAX:
            _CLEANED.clear()
        _CLEANED[raw] = cleaned
    return cleaned


def request_row(raw: RawRequest) -> tuple[Any, ...]:
    """The ``audit_events`` row of a queued request, laid out like ``events.to_tuple`` (``events.LAYOUTS``)."""
    time_ns, status, method, path, query_bytes, ua_bytes, request_id_bytes, address, client_id, organization_id = raw
    res_type: str | None
    res_id: str | None
    parts = path.split("/")
    if (
        len(parts) == 4 and (p2 := parts[2]) and (p3 := parts[3]) and p2[0] != "_" and p3[0] != "_" and "%" not in path and "$" not in path
    ):  # /fhir/Type/id, the most frequent (what classify says)
        interaction, res_type, res_id, operation = _KIND_OF_ID.get(method, "read"), p2, p3, None
    else:
        interaction, res_type, res_id, operation = classify(method, path)
    # the usual ids (ASCII, no NUL, short) are stored as they are
    ids = f"{res_type}{res_id}"
    if not (len(ids) <= 64 and ids.isascii() and "\x00" not in ids):
        res_type = res_type and storable(res_type, 64)
        res_id = res_id and storable(res_id, 64)
    if res_id is not None and interaction.startswith("search"):
        query_bytes = audited_query(interaction, res_id, path, query_bytes.decode("latin-1")).encode("latin-1")
    env = (ua_bytes, address, client_id, organization_id)
    user_agent, address, client_id, organization_id = _CLEANED.get(env) or _cleaned(env)
    if not (query_bytes or operation or request_id_bytes):
        if client_id is None and organization_id is None:  # events.ANONYMOUS_COLUMNS
            return time_ns // 1000, interaction, ACTIONS[interaction], status, res_type, res_id, address, user_agent
        return (
            time_ns // 1000,
            interaction,
            ACTIONS[interaction],
            status,
            res_type,
            res_id,
            client_id,
            organization_id,
            address,
            user_agent,
        )
    return (
        time_ns // 1000,
        interaction,
        ACTIONS[interaction],
        status,
        res_type,
        res_id,
        client_id,
        organization_id,
        address,
        user_agent,
        storable(query_bytes.decode("latin-1"), QUERY_MAX) if query_bytes else None,
        storable("$" + operation, 64) if operation else None,
        storable(request_id_bytes.decode("latin-1"), REQUEST_ID_MAX) if request_id_bytes else None,
        None,  # event_id: derived from the row (see .ids)
    )
