"""AuditEvent search on the audit table: every parameter, prefixes, paging, strictness."""

from __future__ import annotations

import base64

import pytest
import sqlalchemy as sa

from fhir_server.audit import AuditRecord, capability_search_params, purge, read_audit, record_in, search_audit
from fhir_server.errors import FhirError
from fhir_server.storage.audit_tables import audit_events
from fhir_server.timeutil import datetime_range

T0 = datetime_range("2026-01-10T08:00:00Z")[0]
MIN = 60_000_000

# (key, interaction, status, res_type, res_id, query, operation, client, org, address, minutes after T0)
EVENTS = [
    ("e1", "read", 200, "Patient", "p1", None, None, "simrs-a", "org-1", "10.0.0.1", 0),
    ("e2", "vread", 200, "Patient", "p1", None, None, "simrs-a", "org-1", "10.0.0.1", 1),
    ("e3", "search-type", 200, "Observation", None, "subject=Patient/p1", None, "simrs-b", "org-2", "10.0.1.5", 2),
    ("e4", "create", 201, "Observation", "o1", None, None, "simrs-b", "org-2", "10.0.1.5", 3),
    ("e5", "update", 412, "Patient", "p2", None, None, "simrs-a", "org-1", "192.168.1.9", 4),
    ("e6", "delete", 204, "Encounter", "enc1", None, None, "anonymous", None, "127.0.0.1", 60),
    ("e7", "operation", 500, "Patient", "p1", "start=2020", "everything", "simrs-a", "org-1", "10.0.0.1", 24 * 60),
    ("e8", "search-system", 200, None, None, "_type=Patient", None, "simrs-c", None, "FE80::1", 24 * 60 + 1),
    ("e9", "transaction", 200, None, None, None, None, "simrs-c", None, "fe80::2", 2 * 24 * 60),
]


@pytest.fixture
def events(db):
    with db.write() as conn:
        for key, inter, status, rt, rid, q, op, client, org, addr, minutes in EVENTS:
            record_in(
                conn,
                AuditRecord(
                    inter,
                    status,
                    res_type=rt,
                    res_id=rid,
                    query=q,
                    operation=op,
                    client_id=client,
                    organization_id=org,
                    address=addr,
                    user_agent="test",
                    request_id=key,
                    recorded_us=T0 + minutes * MIN,
                    event_id=f"id-{key}",
                ),
            )
    return db


def _keys(db, params, **kw):
    with db.read() as conn:
        found, _next = search_audit(conn, params, default_count=kw.get("count", 100), max_count=1000)
    return [e["id"][3:] for e in found]


def _set(db, params):
    return set(_keys(db, params))


def test_default_is_newest_first(events):
    assert _keys(events, []) == ["e9", "e8", "e7", "e6", "e5", "e4", "e3", "e2", "e1"]
    assert _keys(events, [("_sort", "-date")]) == _keys(events, [])
    assert _keys(events, [("_sort", "date")]) == ["e1", "e2", "e3", "e4", "e5", "e6", "e7", "e8", "e9"]


def test_id(events):
    assert _set(events, [("_id", "id-e3,id-e5")]) == {"e3", "e5"}
    assert _set(events, [("_id", "nope")]) == set()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-01-10", {"e1", "e2", "e3", "e4", "e5", "e6"}),
        ("eq2026-01-10T08", None),  # hour without minutes is malformed
        ("eq2026-01-10T08:01", {"e2"}),
        ("ne2026-01-10", {"e7", "e8", "e9"}),
        ("gt2026-01-10T08:02", {"e4", "e5", "e6", "e7", "e8", "e9"}),
        ("sa2026-01-10T08:02", {"e4", "e5", "e6", "e7", "e8", "e9"}),
        ("ge2026-01-10T08:02", {"e3", "e4", "e5", "e6", "e7", "e8", "e9"}),
        ("lt2026-01-10T08:02", {"e1", "e2"}),
        ("eb2026-01-10T08:02", {"e1", "e2"}),
        ("le2026-01-10T08:02", {"e1", "e2", "e3"}),
        ("ge2026-01-11", {"e7", "e8", "e9"}),
        ("lt2026", set()),
        ("2026-01-10T15:01:00+07:00", {"e2"}),  # WIB
    ],
)
def test_date_prefixes(events, value, expected):
    if expected is None:
        with pytest.raises(FhirError) as exc:
            _keys(events, [("date", value)])
        assert exc.value.status == 400
        return
    assert _set(events, [("date", value)]) == expected
    assert _set(events, [("_lastUpdated", value)]) == expected


def test_date_range_by_and_and_or(events):
    assert _set(events, [("date", "ge2026-01-10T08:01"), ("date", "lt2026-01-10T08:04")]) == {"e2", "e3", "e4"}
    assert _set(events, [("date", "2026-01-11,2026-01-12")]) == {"e7", "e8", "e9"}


def test_agent(events):
    assert _set(events, [("agent:identifier", "simrs-a")]) == {"e1", "e2", "e5", "e7"}
    assert _set(events, [("agent:identifier", "https://fhir-server.id/id/client|simrs-c")]) == {"e8", "e9"}
    assert _set(events, [("agent:identifier", "http://other|simrs-c")]) == set()
    assert _set(events, [("agent", "Organization/org-2")]) == {"e3", "e4"}
    assert _set(events, [("agent", "org-2")]) == {"e3", "e4"}
    assert _set(events, [("agent:Organization", "org-1")]) == {"e1", "e2", "e5", "e7"}
    assert _set(events, [("agent", "Device/org-1")]) == set()


def test_address(events):
    assert _set(events, [("address", "10.0.0")]) == {"e1", "e2", "e7"}
    assert _set(events, [("address", "10.0")]) == {"e1", "e2", "e3", "e4", "e7"}
    assert _set(events, [("address:exact", "10.0.0.1")]) == {"e1", "e2", "e7"}
    assert _set(events, [("address:exact", "10.0.0")]) == set()
    assert _set(events, [("address:contains", "168")]) == {"e5"}
    assert _set(events, [("address", "fe80::")]) == {"e8", "e9"}
    assert _set(events, [("address", "1%")]) == set()  # LIKE wildcards are literal
    assert _set(events, [("address", "1_")]) == set()


def test_entity_and_patient(events):
    assert _set(events, [("entity", "Patient/p1")]) == {"e1", "e2", "e7"}
    assert _set(events, [("entity", "p1")]) == {"e1", "e2", "e7"}
    assert _set(events, [("entity:Patient", "p1")]) == {"e1", "e2", "e7"}
    assert _set(events, [("entity", "Patient/p1/_history/2")]) == {"e1", "e2", "e7"}
    assert _set(events, [("entity", "http://example.org/fhir/Observation/o1")]) == {"e4"}
    assert _set(events, [("entity", "Observation/p1")]) == set()
    assert _set(events, [("entity", "Patient/p1,Encounter/enc1")]) == {"e1", "e2", "e6", "e7"}
    assert _set(events, [("patient", "p2")]) == {"e5"}
    assert _set(events, [("patient", "Patient/p1")]) == {"e1", "e2", "e7"}


def test_entity_type(events):
    assert _set(events, [("entity-type", "Observation")]) == {"e3", "e4"}
    assert _set(events, [("entity-type", "http://hl7.org/fhir/resource-types|Encounter")]) == {"e6"}
    assert _set(events, [("entity-type", "http://terminology.hl7.org/CodeSystem/audit-entity-type|2")]) == {"e8"}


def test_type_and_subtype(events):
    assert len(_set(events, [("type", "rest")])) == 9
    assert len(_set(events, [("type", "http://terminology.hl7.org/CodeSystem/audit-event-type|rest")])) == 9
    assert _set(events, [("type", "110100")]) == set()
    assert _set(events, [("subtype", "read")]) == {"e1"}
    assert _set(events, [("subtype", "read,vread")]) == {"e1", "e2"}
    assert _set(events, [("subtype", "http://hl7.org/fhir/restful-interaction|search-type")]) == {"e3"}
    assert _set(events, [("subtype", "$everything")]) == {"e7"}
    assert _set(events, [("subtype", "everything")]) == {"e7"}
    assert _set(events, [("subtype", "operation")]) == {"e7"}
    assert _set(events, [("subtype", "https://fhir-server.id/CodeSystem/operation|$everything")]) == {"e7"}


def test_action(events):
    assert _set(events, [("action", "R")]) == {"e1", "e2"}
    assert _set(events, [("action", "E")]) == {"e3", "e7", "e8", "e9"}
    assert _set(events, [("action", "http://hl7.org/fhir/audit-event-action|C,D")]) == {"e4", "e6"}
    assert _set(events, [("action", "U")]) == {"e5"}


def test_outcome(events):
    assert _set(events, [("outcome", "4")]) == {"e5"}
    assert _set(events, [("outcome", "8")]) == {"e7"}
    assert _set(events, [("outcome", "http://hl7.org/fhir/audit-event-outcome|4,8")]) == {"e5", "e7"}
    assert len(_set(events, [("outcome", "0")])) == 7
    assert _set(events, [("outcome", "12")]) == set()


def test_parameters_combine_with_and(events):
    assert _set(events, [("agent:identifier", "simrs-a"), ("entity", "Patient/p1"), ("date", "2026-01-10")]) == {"e1", "e2"}


def test_paging_walks_every_event_once(events):
    for sort in ("-date", "date"):
        seen: list[str] = []
        params = [("_count", "2"), ("_sort", sort), ("_format", "json")]
        pages = 0
        while params is not None:
            with events.read() as conn:
                found, params = search_audit(conn, params, default_count=10, max_count=100)
            seen += [e["id"][3:] for e in found]
            pages += 1
            assert pages < 20
        assert pages == 5
        assert sorted(seen) == sorted(k for k, *_ in EVENTS) and len(seen) == 9
        assert seen == (sorted(seen) if sort == "date" else sorted(seen, reverse=True))


def test_paging_with_equal_timestamps(db):
    with db.write() as conn:
        for i in range(25):
            record_in(conn, AuditRecord("read", 200, res_type="Patient", res_id=str(i), recorded_us=T0))
    seen, params = [], [("_count", "4")]
    while params is not None:
        with db.read() as conn:
            found, params = search_audit(conn, params, default_count=10, max_count=100)
        seen += [e["entity"][0]["what"]["reference"] for e in found]
    assert sorted(seen) == sorted(f"Patient/{i}" for i in range(25))


def test_next_params_keep_the_query(events):
    with events.read() as conn:
        found, nxt = search_audit(conn, [("action", "R,E"), ("_count", "3")], default_count=10, max_count=100)
    assert len(found) == 3
    assert nxt[:2] == [("action", "R,E"), ("_count", "3")] and nxt[2][0] == "_cursor"
    with events.read() as conn:
        found, nxt = search_audit(conn, nxt, default_count=10, max_count=100)
    assert len(found) == 3 and nxt is None


def test_count_defaults_and_caps(events):
    with events.read() as conn:
        assert len(search_audit(conn, [], default_count=4, max_count=5)[0]) == 4
        assert len(search_audit(conn, [("_count", "50")], default_count=4, max_count=5)[0]) == 5
        assert search_audit(conn, [("_count", "0")], default_count=4, max_count=5) == ([], None)


@pytest.mark.parametrize(
    "params",
    [
        [("name", "x")],
        [("agent-name", "x")],
        [("_has:Patient:link:id", "x")],
        [("_include", "AuditEvent:agent")],
        [("_total", "accurate")],
        [("address:missing", "true")],
        [("action:not", "R")],
        [("entity:identifier", "x|y")],
        [("_sort", "address")],
        [("_count", "-1")],
        [("_count", "ten")],
        [("date", "2026-13-01")],
        [("date", "ap2026")],
        [("date", "yesterday")],
        [("date", "")],
        [("action", "X")],
        [("outcome", "404")],
        [("entity", "Patient/")],
        [("entity", "a/b/c")],
        [("entity", "Patient/has space")],
        [("agent:identifier", "a|b|c")],
        [("subtype", "read,,vread")],
        [("_cursor", "garbage!")],
        [("_cursor", base64.urlsafe_b64encode(b"d.1.x").decode())],
        [("_sort", "date"), ("_cursor", base64.urlsafe_b64encode(b"d.1.1").decode())],
    ],
)
def test_unknown_or_malformed_is_400(events, params):
    with pytest.raises(FhirError) as exc:
        _keys(events, params)
    assert exc.value.status == 400


def test_sql_metacharacters_are_just_values(events):
    for value in ("' OR 1=1 --", '"; DROP TABLE audit_events; --', "\\", "%", "_"):
        assert _set(events, [("address", value)]) == set()
        assert _set(events, [("agent:identifier", value)]) == set()
    assert len(_keys(events, [])) == 9


def test_search_results_are_valid_audit_events(events):
    from fhir_server.model.validate import validate_resource

    with events.read() as conn:
        found, _ = search_audit(conn, [], default_count=100, max_count=100)
    assert len(found) == 9
    for ev in found:
        assert [i for i in validate_resource(ev) if i.severity in ("error", "fatal")] == [], ev["id"]


def test_read_audit(events):
    with events.read() as conn:
        ev = read_audit(conn, "id-e4")
        assert ev["resourceType"] == "AuditEvent" and ev["id"] == "id-e4"
        assert ev["entity"][0]["what"]["reference"] == "Observation/o1"
        assert read_audit(conn, "missing") is None
        assert read_audit(conn, "x" * 500) is None


def test_purge(events):
    with events.write() as conn:
        assert purge(conn, T0 + 24 * 60 * MIN) == 6
    assert _set(events, []) == {"e7", "e8", "e9"}
    with events.write() as conn:
        assert purge(conn, T0) == 0
        assert conn.execute(sa.select(sa.func.count()).select_from(audit_events)).scalar_one() == 3


def test_capability_search_params():
    params = {p["name"]: p for p in capability_search_params()}
    assert params["date"] == {"name": "date", "definition": "http://hl7.org/fhir/SearchParameter/AuditEvent-date", "type": "date"}
    assert params["_id"]["definition"] == "http://hl7.org/fhir/SearchParameter/Resource-id"
    assert {"agent", "address", "entity", "entity-type", "type", "subtype", "action", "outcome", "patient"} <= set(params)
    from fhir_server.search.parameters import params_for

    official = params_for("AuditEvent")
    for name, p in params.items():
        assert official[name].url == p["definition"] and official[name].type == p["type"], name
