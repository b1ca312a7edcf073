"""What one audit event holds (:class:`AuditRecord`) and its FHIR R4 AuditEvent form.

:class:`AuditRecord` is a plain slotted dataclass the caller fills with what it
already has; truncation and the action code are worked out later, off the
request path (:func:`to_tuple`, called by the recorder's flusher thread). HTTP
requests are queued as raw tuples instead (``request_rows``). :func:`to_fhir`
builds the AuditEvent from a stored row when it is read or searched.

AuditEvent shape (R4, following IHE BALP where R4 leaves a choice):

- ``type`` = audit-event-type#rest; ``subtype`` = restful-interaction#<interaction>
  (plus the operation name, e.g. ``$validate``, in our operation code system)
- ``action`` C/R/U/D/E; ``recorded``; ``outcome`` 0/4/8/12 from the HTTP status,
  ``outcomeDesc`` "HTTP <status>"
- ``agent[0]`` the client: ``who.identifier`` (system ``https://fhir-server.id/id/client``),
  ``requestor`` true, ``network`` (address, type 2 = IP address);
  ``agent[1]`` (only when the client acts for one) ``who`` = ``Organization/<id>``
- ``source.observer.display`` = this server, ``source.type`` = 4 (application server)
- ``entity[0]`` the resource (``what`` = Type/id) and/or the query (``query`` =
  base64 of the query string), ``type`` = resource-types#<Type> or
  audit-entity-type#2 (system object) when no type applies;
  ``entity[1]`` the HTTP request (BALP XrequestId: ``what.identifier`` =
  X-Request-Id, ``detail`` User-Agent)
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fhir_server.storage.audit_tables import ADDRESS_MAX, QUERY_MAX, REQUEST_ID_MAX, USER_AGENT_MAX
from fhir_server.timeutil import now_us, to_instant

from .ids import derived_event_id, new_event_id

CLIENT_SYSTEM = "https://fhir-server.id/id/client"
#: the client of a request that no client made: auth off, or refused before its token
#: was verified. Stored as NULL (no client index entry, two columns fewer to bind)
#: and served as this identifier.
ANONYMOUS = "anonymous"
OPERATION_SYSTEM = "https://fhir-server.id/CodeSystem/operation"
EVENT_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/audit-event-type"
INTERACTION_SYSTEM = "http://hl7.org/fhir/restful-interaction"
ACTION_SYSTEM = "http://hl7.org/fhir/audit-event-action"
OUTCOME_SYSTEM = "http://hl7.org/fhir/audit-event-outcome"
RESOURCE_TYPE_SYSTEM = "http://hl7.org/fhir/resource-types"
ENTITY_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE_SYSTEM = "http://terminology.hl7.org/CodeSystem/object-role"
SOURCE_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/security-source-type"
DICOM_SYSTEM = "http://dicom.nema.org/resources/ontology/DCM"
BALP_ENTITY_TYPE_SYSTEM = "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType"

#: the server, as AuditEvent.source.observer.display
OBSERVER = "fhir-server.id FHIR server"

#: restful-interaction code -> AuditEvent.action. A search is "E" (the action
#: code system: "perform a query/search operation"); history reads versions.
ACTIONS: dict[str, str] = {
    "read": "R",
    "vread": "R",
    "history-instance": "R",
    "history-type": "R",
    "history-system": "R",
    "search-type": "E",
    "search-system": "E",
    "create": "C",
    "update": "U",
    "patch": "U",
    "delete": "D",
    "transaction": "E",
    "batch": "E",
    "operation": "E",
}
INTERACTIONS = tuple(ACTIONS)
OUTCOMES = ("0", "4", "8", "12")


@dataclass(slots=True)
class AuditRecord:
    """One audited interaction, as the HTTP layer knows it.

    ``interaction`` is a restful-interaction code (see :data:`INTERACTIONS`);
    ``status`` the HTTP status of the response. ``operation`` is the operation
    name, with or without its ``$`` (stored with it). ``query`` is the query string
    of a search or operation (without ``_format``/``_pretty``). ``client_id``
    is the OAuth2 client (:data:`ANONYMOUS` when auth is off; stored as NULL). ``recorded_us``
    defaults to now; without an ``event_id`` the event's id is derived from its
    stored row (see :mod:`.ids`). ``action`` defaults to the interaction's.
    """

    interaction: str
    status: int
    res_type: str | None = None
    res_id: str | None = None
    query: str | None = None
    operation: str | None = None
    client_id: str | None = None
    organization_id: str | None = None
    address: str | None = None
    user_agent: str | None = None
    request_id: str | None = None
    recorded_us: int = field(default_factory=now_us)
    event_id: str | None = None
    action: str | None = None


#: the columns every stored event writes, in the order of the rows built by
#: :func:`to_tuple` and ``request_rows.request_row``
BASE_COLUMNS = (
    "recorded_us",
    "interaction",
    "action",
    "status",
    "res_type",
    "res_id",
    "client_id",
    "organization_id",
    "address",
    "user_agent",
)
#: an anonymous event (auth off: no client, no organization) leaves those two out:
#: each bound column costs insert time, even a NULL
ANONYMOUS_COLUMNS = tuple(c for c in BASE_COLUMNS if c not in ("client_id", "organization_id"))
#: the rarer columns: a row has them (after the base ones) only when one is set,
#: so a plain read writes 8 or 10 columns, not 14
EXTRA_COLUMNS = ("query", "operation", "request_id", "event_id")
FULL_COLUMNS = BASE_COLUMNS + EXTRA_COLUMNS
#: all the columns, in the order of :func:`to_row` and the full rows
COLUMNS = FULL_COLUMNS
#: the columns of a row, by its length
LAYOUTS: dict[int, tuple[str, ...]] = {len(c): c for c in (ANONYMOUS_COLUMNS, BASE_COLUMNS, FULL_COLUMNS)}


def anonymous(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A :data:`BASE_COLUMNS` row without client and organization in the :data:`ANONYMOUS_COLUMNS` layout."""
    return row[:6] + row[8:]


def stored_client_id(client_id: str | None) -> str | None:
    """The ``client_id`` column of a client: cut and cleaned; NULL for :data:`ANONYMOUS`."""
    return storable(client_id, 128) if client_id != ANONYMOUS else None


def storable(value: str | None, limit: int) -> str | None:
    """Cut to ``limit``; make storable on both databases: no NUL (PostgreSQL text
    refuses it) and no lone surrogates (not UTF-8). A hostile value must not be
    able to keep its own audit event out of the database."""
    if value is None:
        return None
    if len(value) > limit:
        value = value[:limit]
    if not value.isascii():
        value = value.encode("utf-8", "replace").decode("utf-8")
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    return value


def _operation(name: str | None) -> str | None:
    """The operation name with its ``$`` (``validate`` and ``$validate`` are both accepted)."""
    if not name:
        return None
    return storable(name if name[0] == "$" else "$" + name, 64)


def to_tuple(e: AuditRecord) -> tuple[Any, ...]:
    """The ``audit_events`` row of an event: :data:`BASE_COLUMNS`, followed by
    :data:`EXTRA_COLUMNS` when one of them is set. Fills the action, cuts long
    values; ``event_id`` stays None unless given (the id is then derived from
    the row, see :mod:`.ids`). Raises ValueError for an unknown interaction."""
    try:
        action = e.action or ACTIONS[e.interaction]
    except KeyError:
        raise ValueError(f"unknown interaction {e.interaction!r}") from None
    row = (
        e.recorded_us,
        e.interaction,
        action,
        int(e.status),
        storable(e.res_type, 64),
        storable(e.res_id, 64),
        stored_client_id(e.client_id),
        storable(e.organization_id, 64),
        storable(e.address, ADDRESS_MAX),
        storable(e.user_agent, USER_AGENT_MAX),
    )
    extra = (
        storable(e.query, QUERY_MAX) or None,
        _operation(e.operation),
        storable(e.request_id, REQUEST_ID_MAX),
        storable(e.event_id, 64) or None,
    )
    if extra != (None, None, None, None):
        return row + extra
    return anonymous(row) if row[6] is None and row[7] is None else row


def to_row(event: AuditRecord) -> dict[str, Any]:
    """A standalone ``audit_events`` row of an event as a dict (see :func:`to_tuple`).

    It has no primary key to derive an id from, so an event without an
    ``event_id`` gets a random time-ordered one here."""
    row: dict[str, Any] = dict.fromkeys(FULL_COLUMNS)
    values = to_tuple(event)
    row.update(zip(LAYOUTS[len(values)], values, strict=True))
    if row["event_id"] is None:
        row["event_id"] = new_event_id(row["recorded_us"])
    return row


def event_id_of(r: Mapping[str, Any]) -> str:
    """The AuditEvent.id of a stored row: its ``event_id``, or the one derived from its pk."""
    return r["event_id"] or derived_event_id(r["recorded_us"], r["pk"])


def outcome_code(status: int) -> str:
    """AuditEvent.outcome of an HTTP status: 0 success (1xx-3xx), 4 minor failure
    (4xx: the client's request was refused), 8 serious failure (5xx), 12 major
    failure (no valid status: the request did not complete)."""
    if 100 <= status < 400:
        return "0"
    if 400 <= status < 500:
        return "4"
    if 500 <= status < 600:
        return "8"
    return "12"


def status_range(outcome: str) -> list[tuple[int, int]]:
    """The inclusive HTTP status ranges of an AuditEvent.outcome code (for search)."""
    return {
        "0": [(100, 399)],
        "4": [(400, 499)],
        "8": [(500, 599)],
        "12": [(-(2**31), 99), (600, 2**31 - 1)],
    }[outcome]


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def to_fhir(row: Mapping[str, Any] | Any, *, observer: str = OBSERVER) -> dict[str, Any]:
    """The FHIR R4 AuditEvent of an ``audit_events`` row.

    ``row`` is a mapping with the table's columns (``Row._mapping``, the dict of
    :func:`to_row`) or a Row itself.
    """
    r = row._mapping if hasattr(row, "_mapping") else row
    interaction = r["interaction"]
    status = int(r["status"])
    subtype = [{"system": INTERACTION_SYSTEM, "code": interaction}]
    if r["operation"]:
        subtype.append({"system": OPERATION_SYSTEM, "code": r["operation"]})
    client: dict[str, Any] = {
        "type": {"coding": [{"system": DICOM_SYSTEM, "code": "110153", "display": "Source Role ID"}]},
        "requestor": True,
    }
    client["who"] = {"identifier": {"system": CLIENT_SYSTEM, "value": r["client_id"] or ANONYMOUS}}
    if r["address"]:
        client["network"] = {"address": r["address"], "type": "2"}
    agents = [client]
    if r["organization_id"]:
        agents.append({"who": {"reference": f"Organization/{r['organization_id']}"}, "requestor": False})
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": event_id_of(r),
        "meta": {"lastUpdated": to_instant(r["recorded_us"])},
        "type": {"system": EVENT_TYPE_SYSTEM, "code": "rest", "display": "RESTful Operation"},
        "subtype": subtype,
        "action": r["action"],
        "recorded": to_instant(r["recorded_us"]),
        "outcome": outcome_code(status),
        "outcomeDesc": f"HTTP {status}",
        "agent": agents,
        "source": {
            "observer": {"display": observer},
            "type": [{"system": SOURCE_TYPE_SYSTEM, "code": "4", "display": "Application Server"}],
        },
    }
    entities: list[dict[str, Any]] = []
    res_type, res_id, query = r["res_type"], r["res_id"], r["query"]
    if res_type or res_id or query:
        entity: dict[str, Any] = {}
        if res_type and res_id:
            entity["what"] = {"reference": f"{res_type}/{res_id}"}
        if res_type:
            entity["type"] = {"system": RESOURCE_TYPE_SYSTEM, "code": res_type}
        else:
            entity["type"] = {"system": ENTITY_TYPE_SYSTEM, "code": "2", "display": "System Object"}
        if query:
            entity["role"] = {"system": OBJECT_ROLE_SYSTEM, "code": "24", "display": "Query"}
            entity["query"] = _b64(query)
        elif res_type and res_id:
            entity["role"] = {"system": OBJECT_ROLE_SYSTEM, "code": "4", "display": "Domain Resource"}
        entities.append(entity)
    if r["request_id"] or r["user_agent"]:
        request: dict[str, Any] = {
            "type": {"system": BALP_ENTITY_TYPE_SYSTEM, "code": "XrequestId"},
        }
        if r["request_id"]:
            request["what"] = {"identifier": {"value": r["request_id"]}}
        if r["user_agent"]:
            request["detail"] = [{"type": "User-Agent", "valueString": r["user_agent"]}]
        entities.append(request)
    if entities:
        event["entity"] = entities
    return event
