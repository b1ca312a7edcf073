"""Event ids: stored when explicit, otherwise derived from the row (pk + time) and found again."""

from __future__ import annotations

import uuid

import sqlalchemy as sa

from fhir_server.audit import AuditRecord, AuditRecorder, read_audit, record_in, search_audit
from fhir_server.audit.ids import derived_event_id, parse_derived
from fhir_server.storage.audit_tables import audit_events

US = 1_795_000_000_123_456


def test_derived_ids_are_uuid7_and_parse_back():
    for pk in (1, 2, 12345, (1 << 62) + 5, (1 << 63) - 1):
        event_id = derived_event_id(US, pk)
        u = uuid.UUID(event_id)
        assert u.version == 7 and u.variant == uuid.RFC_4122 and str(u) == event_id
        assert int(u.hex[:12], 16) == US // 1000
        assert parse_derived(event_id) == (US // 1000 * 1000, pk)
    assert derived_event_id(US, 1) != derived_event_id(US, 2) != derived_event_id(US + 1000, 2)


def test_parse_refuses_other_spellings():
    event_id = derived_event_id(US, 42)
    assert parse_derived(event_id.upper()) is None  # ids are case-sensitive
    assert parse_derived(event_id.replace("-", "")) is None
    assert parse_derived(str(uuid.uuid4())) is None  # version 4
    assert parse_derived("id-e1") is None and parse_derived("") is None
    assert parse_derived("0" * 8 + "-_000-7000-8000-" + "0" * 12) is None
    big = uuid.UUID(int=(US // 1000 << 80) | (7 << 76) | (0xFFF << 64) | (0b10 << 62) | 5)
    assert parse_derived(str(big)) is None  # a pk beyond BIGINT


def _stored(db):
    with db.read() as conn:
        return conn.execute(sa.select(audit_events.c.pk, audit_events.c.event_id).order_by(audit_events.c.pk)).all()


def test_events_without_an_id_store_none_and_are_found_by_their_derived_id(db):
    rec = AuditRecorder(db)
    for i in range(3):
        rec.record(AuditRecord("read", 200, res_type="Patient", res_id=f"p{i}", recorded_us=US + i))
    rec.record(AuditRecord("read", 200, res_type="Patient", res_id="explicit", event_id="my-id", recorded_us=US))
    assert rec.flush() == 4
    with db.write() as conn:
        record_in(conn, AuditRecord("create", 201, res_type="Patient", res_id="w1", recorded_us=US + 5))
    stored = _stored(db)
    assert [e for _pk, e in stored].count(None) == 4 and "my-id" in [e for _pk, e in stored]
    with db.read() as conn:
        events, _ = search_audit(conn, [], default_count=10, max_count=10)
        ids = {e["entity"][0]["what"]["reference"]: e["id"] for e in events}
        assert ids["Patient/explicit"] == "my-id"
        pks = {pk for pk, e in stored if e is None}
        assert {parse_derived(i)[1] for r, i in ids.items() if r != "Patient/explicit"} == pks
        for ref, event_id in ids.items():
            assert read_audit(conn, event_id)["entity"][0]["what"]["reference"] == ref
            found, _ = search_audit(conn, [("_id", event_id)], default_count=10, max_count=10)
            assert [e["id"] for e in found] == [event_id]
        # the right pk with the wrong millisecond, or another spelling, finds nothing
        some_pk = min(pks)
        assert read_audit(conn, derived_event_id(US + 7_000_000, some_pk)) is None
        assert read_audit(conn, ids["Patient/p0"].upper()) is None
        found, _ = search_audit(conn, [("_id", f"{ids['Patient/p0']},my-id")], default_count=10, max_count=10)
        assert {e["id"] for e in found} == {ids["Patient/p0"], "my-id"}


def test_explicit_ids_stay_unique(db):
    with db.write() as conn:
        record_in(conn, AuditRecord("read", 200, event_id="same"))
    rec = AuditRecorder(db)
    rec.record(AuditRecord("read", 200, event_id="same"))
    rec.record(AuditRecord("read", 200))
    rec.record(AuditRecord("read", 200))
    assert rec.flush() == 2 and rec.dropped == 1  # the duplicate only; NULL ids never collide
