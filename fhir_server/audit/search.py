"""AuditEvent read, search and purge, served from the ``audit_events`` table.

The generic search engine does not index AuditEvents (they are not stored as
resources), so the supported R4 search parameters are implemented here on the
typed columns. The search is strict: any other parameter or modifier, and any
malformed value, is a ``FhirError(400)``.

=================  ===========  ==================================================================
parameter          type         matches
=================  ===========  ==================================================================
``_id``            token        the event id
``date``           date         ``recorded``; prefixes eq ne gt ge lt le sa eb (``_lastUpdated`` is the same)
``agent``          reference    ``Organization/<id>`` (or a bare ``<id>``): events of clients acting
                                for that Organization (agent[1].who)
``agent:identifier`` token      the client: ``https://fhir-server.id/id/client|<client id>`` or ``<client id>``
``address``        string       the client's network address; starts-with (``:exact``, ``:contains``)
``entity``         reference    ``Type/id`` (``Type/id/_history/n``, an absolute URL ending so, or
                                ``entity:Type=id``) or a bare ``id`` of any type
``entity-type``    token        the resource type (``Patient`` or ``http://hl7.org/fhir/resource-types|Patient``);
                                ``http://terminology.hl7.org/CodeSystem/audit-entity-type|2`` = system-level queries
``patient``        reference    ``Patient/<id>`` or ``<id>``: events about that Patient
``type``           token        ``rest`` (every event has this type)
``subtype``        token        the restful-interaction code (``read``, ``search-type``, ...) or the
                                operation name (``$validate``)
``action``         token        C R U D E
``outcome``        token        0 (HTTP 1xx-3xx), 4 (4xx), 8 (5xx), 12 (no status)
``_count``         number       page size (capped at ``max_count``)
``_sort``          -            ``-date`` (the default: newest first) or ``date``
``_cursor``        -            the opaque page token of a ``next`` link
=================  ===========  ==================================================================

Comma-separated values are ORed, repeated parameters ANDed (``\\,`` escapes a
comma). ``_format`` and ``_pretty`` are ignored (the HTTP layer handles them).
"""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from fhir_server import paging
from fhir_server.errors import FhirError
from fhir_server.search.values import date_range
from fhir_server.storage.audit_tables import audit_events as t

from .events import (
    ACTION_SYSTEM,
    ANONYMOUS,
    CLIENT_SYSTEM,
    ENTITY_TYPE_SYSTEM,
    EVENT_TYPE_SYSTEM,
    INTERACTION_SYSTEM,
    OPERATION_SYSTEM,
    OUTCOME_SYSTEM,
    OUTCOMES,
    RESOURCE_TYPE_SYSTEM,
    status_range,
    to_fhir,
)
from .ids import parse_derived

_SP = "http://hl7.org/fhir/SearchParameter/"
_PARAMS: dict[str, tuple[str, str]] = {
    # name: (definition, type)
    "_id": (_SP + "Resource-id", "token"),
    "_lastUpdated": (_SP + "Resource-lastUpdated", "date"),
    "date": (_SP + "AuditEvent-date", "date"),
    "agent": (_SP + "AuditEvent-agent", "reference"),
    "address": (_SP + "AuditEvent-address", "string"),
    "entity": (_SP + "AuditEvent-entity", "reference"),
    "entity-type": (_SP + "AuditEvent-entity-type", "token"),
    "patient": (_SP + "AuditEvent-patient", "reference"),
    "type": (_SP + "AuditEvent-type", "token"),
    "subtype": (_SP + "AuditEvent-subtype", "token"),
    "action": (_SP + "AuditEvent-action", "token"),
    "outcome": (_SP + "AuditEvent-outcome", "token"),
}
_MODIFIERS: dict[str, frozenset[str]] = {
    "agent": frozenset({"identifier", "Organization"}),
    "address": frozenset({"exact", "contains"}),
    "entity": frozenset({"*type*"}),  # entity:Patient=123
    "patient": frozenset({"Patient"}),
}
_IGNORED = frozenset({"_format", "_pretty"})
_DATE_PREFIXES = ("eq", "ne", "gt", "ge", "lt", "le", "sa", "eb")
_TYPE = re.compile(r"[A-Z][A-Za-z]{0,63}")
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_MAX_VALUES = 100  # OR-ed values in one parameter


def capability_search_params() -> list[dict[str, str]]:
    """The search parameters of AuditEvent for the CapabilityStatement (name, definition, type)."""
    return [{"name": name, "definition": url, "type": typ} for name, (url, typ) in _PARAMS.items()]


def _bad(name: str, message: str) -> FhirError:
    return FhirError.of(400, "invalid", f"AuditEvent search parameter '{name}': {message}")


def _split(name: str, raw: str) -> list[str]:
    """Comma-separated values with FHIR escapes (``\\,`` ``\\|`` ``\\$`` ``\\\\``) kept for _token."""
    values, cur, i = [], [], 0
    while i < len(raw):
        c = raw[i]
        if c == "\\" and i + 1 < len(raw):
            cur.append(raw[i : i + 2])
            i += 2
            continue
        if c == ",":
            values.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    values.append("".join(cur))
    if any(v == "" for v in values):
        raise _bad(name, "empty value")
    if len(values) > _MAX_VALUES:
        raise _bad(name, f"more than {_MAX_VALUES} values")
    return values


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value)


def _token(name: str, value: str) -> tuple[str | None, str]:
    """``system|code``, ``|code`` or ``code`` -> (system or None for any, code)."""
    parts = re.split(r"(?<!\\)\|", value)
    if len(parts) == 1:
        system, code = None, parts[0]
    elif len(parts) == 2:
        system, code = _unescape(parts[0]), parts[1]
    else:
        raise _bad(name, f"'{value[:80]}' has more than one '|'")
    code = _unescape(code)
    if not code:
        raise _bad(name, "a code is required")
    return system, code


def _reference(name: str, value: str, type_modifier: str | None) -> tuple[str | None, str]:
    """(type or None, id) of a reference search value."""
    value = _unescape(value)
    if type_modifier is not None:
        res_type, res_id = type_modifier, value
    else:
        parts = value.split("/")
        if len(parts) >= 4 and parts[-2] == "_history":
            parts = parts[:-2]
        if len(parts) == 1:
            res_type, res_id = None, parts[0]
        elif len(parts) == 2 or "://" in value:
            res_type, res_id = parts[-2], parts[-1]
        else:
            raise _bad(name, f"'{value[:80]}' is not a reference (Type/id or id)")
    if res_type is not None and not _TYPE.fullmatch(res_type):
        raise _bad(name, f"'{res_type[:80]}' is not a resource type")
    if not _ID.fullmatch(res_id):
        raise _bad(name, f"'{res_id[:80]}' is not a resource id")
    return res_type, res_id


def _date(name: str, value: str) -> sa.ColumnElement[bool]:
    prefix = value[:2] if value[:2] in _DATE_PREFIXES else "eq"
    if value[:2].isalpha() and value[:2] not in _DATE_PREFIXES:
        raise _bad(name, f"prefix '{value[:2]}' is not supported (use {', '.join(_DATE_PREFIXES)})")
    body = value[2:] if value[:2] in _DATE_PREFIXES else value
    rng = date_range(body)
    if rng is None:
        raise _bad(name, f"'{value[:80]}' is not a FHIR date, dateTime or instant")
    lo, hi = rng
    col = t.c.recorded_us
    return {
        "eq": sa.and_(col >= lo, col <= hi),
        "ne": sa.or_(col < lo, col > hi),
        "gt": col > hi,
        "sa": col > hi,
        "ge": col >= lo,
        "lt": col < lo,
        "eb": col < lo,
        "le": col <= hi,
    }[prefix]


def _like_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


_NOTHING = sa.false()


def _criterion(name: str, modifier: str | None, value: str) -> sa.ColumnElement[bool]:
    c = t.c
    if name in ("date", "_lastUpdated"):
        return _date(name, value)
    if name == "_id":
        system, code = _token(name, value)
        return _id_is(code) if not system else _NOTHING
    if name == "action":
        system, code = _token(name, value)
        if system not in (None, "", ACTION_SYSTEM) or code not in ("C", "R", "U", "D", "E"):
            raise _bad(name, f"'{value[:80]}' is not an action code (C, R, U, D, E)")
        return c.action == code
    if name == "outcome":
        system, code = _token(name, value)
        if system not in (None, "", OUTCOME_SYSTEM) or code not in OUTCOMES:
            raise _bad(name, f"'{value[:80]}' is not an outcome code (0, 4, 8, 12)")
        return sa.or_(*(c.status.between(lo, hi) for lo, hi in status_range(code)))
    if name == "type":
        system, code = _token(name, value)
        return sa.true() if system in (None, EVENT_TYPE_SYSTEM) and code == "rest" else _NOTHING
    if name == "subtype":
        system, code = _token(name, value)
        if system == INTERACTION_SYSTEM:
            return c.interaction == code
        operation = code if code.startswith("$") else "$" + code
        if system == OPERATION_SYSTEM:
            return c.operation == operation
        if system is None:
            return sa.or_(c.interaction == code, c.operation == operation)
        return _NOTHING
    if name == "entity-type":
        system, code = _token(name, value)
        if system in (None, RESOURCE_TYPE_SYSTEM) and _TYPE.fullmatch(code):
            return c.res_type == code
        if system in (None, ENTITY_TYPE_SYSTEM) and code == "2":
            return sa.and_(c.res_type.is_(None), sa.or_(c.query.is_not(None), c.res_id.is_not(None)))
        return _NOTHING
    if name == "agent":
        if modifier == "identifier":
            system, code = _token(name, value)
            if system not in (None, CLIENT_SYSTEM):
                return _NOTHING
            return c.client_id.is_(None) if code == ANONYMOUS else c.client_id == code
        res_type, res_id = _reference(name, value, modifier)
        return c.organization_id == res_id if res_type in (None, "Organization") else _NOTHING
    if name in ("entity", "patient"):
        res_type, res_id = _reference(name, value, modifier)
        if name == "patient":
            if res_type not in (None, "Patient"):
                return _NOTHING
            res_type = "Patient"
        cond = c.res_id == res_id
        return sa.and_(c.res_type == res_type, cond) if res_type else cond
    if name == "address":
        value = _unescape(value).lower()
        col = sa.func.lower(c.address)
        if modifier == "exact":
            return col == value
        pattern = _like_escape(value) + "%"
        if modifier == "contains":
            pattern = "%" + pattern
        return col.like(pattern, escape="\\")
    raise AssertionError(name)  # pragma: no cover


def _id_is(event_id: str) -> sa.ColumnElement[bool]:
    """The event with this id: stored explicitly, or derived from its pk and time (see .ids)."""
    stored = t.c.event_id == event_id
    derived = parse_derived(event_id)
    if derived is None:
        return stored
    first_us, pk = derived
    return sa.or_(stored, sa.and_(t.c.pk == pk, t.c.event_id.is_(None), t.c.recorded_us.between(first_us, first_us + 999)))


def search_audit(
    conn: Connection,
    params: list[tuple[str, str]],
    *,
    default_count: int,
    max_count: int,
) -> tuple[list[dict[str, Any]], list[tuple[str, str]] | None]:
    """One page of AuditEvents matching ``params``, and the params of the next page (or None).

    Raises ``FhirError(400)`` for an unknown parameter or modifier and for a
    malformed value. The next page's params are ``params`` without
    ``_cursor`` plus a new ``_cursor``.
    """
    where: list[sa.ColumnElement[bool]] = []
    count = default_count
    ascending = False
    cursor_raw: str | None = None
    for full_name, raw in params:
        name, _, modifier_text = full_name.partition(":")
        modifier = modifier_text or None
        if name in _IGNORED and modifier is None:
            continue
        if full_name == "_count":
            count = paging.parse_count(raw, max_count)
            continue
        if full_name == "_sort":
            if raw not in ("date", "-date", "_lastUpdated", "-_lastUpdated"):
                raise _bad("_sort", f"'{raw[:80]}': only date and -date are supported")
            ascending = not raw.startswith("-")
            continue
        if full_name == "_cursor":
            cursor_raw = raw
            continue
        if name not in _PARAMS:
            raise FhirError.of(400, "not-supported", f"AuditEvent search does not support the parameter '{name[:80]}'")
        if modifier is not None:
            allowed = _MODIFIERS.get(name, frozenset())
            type_ok = "*type*" in allowed and _TYPE.fullmatch(modifier) is not None
            if modifier not in allowed and not type_ok:
                raise FhirError.of(400, "not-supported", f"AuditEvent search does not support the modifier '{full_name[:80]}'")
        values = _split(full_name, raw)
        where.append(sa.or_(*(_criterion(name, modifier, v) for v in values)))
    key = (t.c.recorded_us, t.c.pk)
    if cursor_raw is not None:
        cursor = paging.decode_ints(cursor_raw, "_cursor", 1, ("a",) if ascending else ("d",))
        us, pk = cursor.keys[0], cursor.pk
        if ascending:
            where.append(sa.or_(t.c.recorded_us > us, sa.and_(t.c.recorded_us == us, t.c.pk > pk)))
        else:
            where.append(sa.or_(t.c.recorded_us < us, sa.and_(t.c.recorded_us == us, t.c.pk < pk)))
    if count == 0:
        return [], None
    order = [k.asc() for k in key] if ascending else [k.desc() for k in key]
    stmt = sa.select(t).where(*where).order_by(*order).limit(count + 1)
    rows = conn.execute(stmt).all()
    next_params = None
    if len(rows) > count:
        rows = rows[:count]
        last = rows[-1]
        next_cursor = paging.encode([last.recorded_us], last.pk, "a" if ascending else "d")
        next_params = [(n, v) for n, v in params if n != "_cursor"] + [("_cursor", next_cursor)]
    return [to_fhir(r) for r in rows], next_params


def read_audit(conn: Connection, event_id: str) -> dict[str, Any] | None:
    """The AuditEvent with id ``event_id``, or None."""
    if not event_id or len(event_id) > 64:
        return None
    row = conn.execute(sa.select(t).where(_id_is(event_id)).limit(1)).first()
    return to_fhir(row) if row else None


def purge(conn: Connection, before_us: int) -> int:
    """Delete the events recorded before ``before_us`` (epoch µs); the number deleted.

    For ``fhir-server audit purge --before DATE`` (retention). Runs in the
    caller's transaction.
    """
    return conn.execute(sa.delete(t).where(t.c.recorded_us < before_us)).rowcount
