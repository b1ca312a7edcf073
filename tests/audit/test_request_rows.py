"""A request's raw fields (queued by the middleware) -> its audit row, and the middleware itself."""

from __future__ import annotations

import asyncio
import gc

import pytest

from fhir_server.api.access import Principal
from fhir_server.api.audit_middleware import AuditMiddleware
from fhir_server.audit import AuditRecorder, search_audit
from fhir_server.audit.events import ANONYMOUS_COLUMNS, BASE_COLUMNS, FULL_COLUMNS, LAYOUTS, AuditRecord, to_tuple
from fhir_server.audit.request_rows import classify, request_row

T_NS = 1_795_000_000_123_456_789


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/fhir/Patient/p1", ("read", "Patient", "p1", None)),
        ("HEAD", "/fhir/Patient/p1", ("read", "Patient", "p1", None)),
        ("PUT", "/fhir/Patient/p1", ("update", "Patient", "p1", None)),
        ("PATCH", "/fhir/Patient/p1", ("patch", "Patient", "p1", None)),
        ("DELETE", "/fhir/Patient/p1", ("delete", "Patient", "p1", None)),
        ("GET", "/fhir/Patient/p1/_history/2", ("vread", "Patient", "p1", None)),
        ("GET", "/fhir/Patient/p1/_history", ("history-instance", "Patient", "p1", None)),
        ("GET", "/fhir/Patient/_history", ("history-type", "Patient", None, None)),
        ("GET", "/fhir/_history", ("history-system", None, None, None)),
        ("GET", "/fhir/Patient", ("search-type", "Patient", None, None)),
        ("GET", "/fhir/Patient/", ("search-type", "Patient", None, None)),
        ("POST", "/fhir/Patient/_search", ("search-type", "Patient", None, None)),
        ("POST", "/fhir/Patient", ("create", "Patient", None, None)),
        ("GET", "/fhir", ("search-system", None, None, None)),
        ("POST", "/fhir", ("transaction", None, None, None)),
        ("POST", "/fhir/$validate", ("operation", None, None, "validate")),
        ("POST", "/fhir/Patient/$validate", ("operation", "Patient", None, "validate")),
        ("GET", "/fhir/Patient/p1/$everything", ("operation", "Patient", "p1", "everything")),
        ("GET", "/fhir/Patient/p%241", ("read", "Patient", "p$1", None)),  # an escaped $ is no operation
        # searches in a compartment: the compartment is what they look into
        ("GET", "/fhir/Patient/p1/Encounter", ("search-type", "Patient", "p1", None)),
        ("POST", "/fhir/Patient/p1/Encounter/_search", ("search-type", "Patient", "p1", None)),
        ("GET", "/fhir/Patient/p1/*", ("search-system", "Patient", "p1", None)),
        ("POST", "/fhir/Patient/p1/_search", ("search-system", "Patient", "p1", None)),
        ("DELETE", "/fhir/Patient/p1/Encounter", ("delete", "Patient", "p1", None)),  # no such interaction (405)
        ("GET", "/fhir//Patient//p1", ("read", "Patient", "p1", None)),
    ],
)
def test_classify(method, path, expected):
    assert classify(method, path) == expected


def _raw(
    path="/fhir/Patient/p1",
    *,
    method="GET",
    status=200,
    query=b"",
    ua=b"SIMRS/2.0",
    request_id=None,
    address="10.0.0.7",
    client_id="simrs-1",
    organization_id="org-9",
):
    return (T_NS, status, method, path, query, ua, request_id, address, client_id, organization_id)


def _as_dict(row):
    return {**dict.fromkeys(FULL_COLUMNS), **dict(zip(LAYOUTS[len(row)], row, strict=True))}


def test_a_read_is_a_base_row_like_the_record_of_the_same_event():
    row = request_row(_raw())
    assert len(row) == len(BASE_COLUMNS)
    assert row == to_tuple(
        AuditRecord(
            "read",
            200,
            res_type="Patient",
            res_id="p1",
            client_id="simrs-1",
            organization_id="org-9",
            address="10.0.0.7",
            user_agent="SIMRS/2.0",
            recorded_us=T_NS // 1000,
        )
    )


def test_an_anonymous_read_leaves_client_and_organization_out_like_the_record_of_the_same_event():
    row = request_row(_raw(client_id=None, organization_id=None))
    assert len(row) == len(ANONYMOUS_COLUMNS) < len(BASE_COLUMNS)
    assert _as_dict(row) == {
        **dict.fromkeys(FULL_COLUMNS),
        "recorded_us": T_NS // 1000,
        "interaction": "read",
        "action": "R",
        "status": 200,
        "res_type": "Patient",
        "res_id": "p1",
        "address": "10.0.0.7",
        "user_agent": "SIMRS/2.0",
    }
    assert row == to_tuple(
        AuditRecord("read", 200, res_type="Patient", res_id="p1", address="10.0.0.7", user_agent="SIMRS/2.0", recorded_us=T_NS // 1000)
    )
    # an organization without a client (not made by the server, but storable) keeps the base layout
    assert len(request_row(_raw(client_id=None))) == len(BASE_COLUMNS)


def test_query_operation_and_request_id_make_a_full_row():
    row = _as_dict(
        request_row(
            _raw(
                "/fhir/Patient/p1/$everything",
                query=b"start=2020&_count=5",
                ua=None,
                request_id=b"req-7",
                address=None,
                client_id=None,
                organization_id=None,
            )
        )
    )
    assert row == {
        **dict.fromkeys(FULL_COLUMNS),
        "recorded_us": T_NS // 1000,
        "interaction": "operation",
        "action": "E",
        "status": 200,
        "res_type": "Patient",
        "res_id": "p1",
        "query": "start=2020&_count=5",
        "operation": "$everything",
        "request_id": "req-7",
    }


def test_long_and_hostile_values_are_cut_and_made_storable():
    long_id = "i" * 500
    row = _as_dict(
        request_row(_raw(f"/fhir/Patient/{long_id}", ua=b"u" * 5000, client_id="c" * 300, organization_id="o" * 100, query=b"q" * 100_000))
    )
    assert len(row["res_id"]) == 64 and len(row["user_agent"]) == 256 and len(row["client_id"]) == 128
    assert len(row["organization_id"]) == 64 and len(row["query"]) == 2048
    row = _as_dict(request_row(_raw("/fhir/Patient/a%00b\ud800", ua="é\x00".encode("latin-1"))))
    assert row["res_id"] == "a\ufffdb?" and row["user_agent"] == "é\ufffd"
    row = _as_dict(request_row(_raw(f"/fhir/{'T' * 100}/x", address="a" * 100)))
    assert len(row["res_type"]) == 64 and len(row["address"]) == 64


def _run(app, scope):
    sent = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request"}

    asyncio.run(app(scope, receive, send))
    return sent


class _Queue:
    def __init__(self):
        self.items = []

    def record(self, item):
        self.items.append(item)


def test_middleware_queues_the_raw_request_with_its_status():
    async def app(scope, receive, send):
        scope.setdefault("state", {})["principal"] = Principal(None, "simrs-1", "org-2")
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    queue = _Queue()
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/fhir/Patient/x",
        "query_string": b"_summary=true",
        "headers": [(b"host", b"h"), (b"user-agent", b"UA/1"), (b"x-request-id", b"r-1")],
        "client": ("127.0.0.1", 1),
    }
    sent = _run(AuditMiddleware(app, recorder_for=lambda s: queue), scope)
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    (item,) = queue.items
    # atomic values only: the garbage collector stops tracking the queued tuple
    assert all(v is None or type(v) in (int, str, bytes) for v in item)
    gc.collect()
    assert not gc.is_tracked(item)
    row = _as_dict(request_row(item))
    assert {
        k: row[k]
        for k in ("interaction", "status", "res_id", "client_id", "organization_id", "address", "user_agent", "request_id", "query")
    } == {
        "interaction": "read",
        "status": 404,
        "res_id": "x",
        "client_id": "simrs-1",
        "organization_id": "org-2",
        "address": "127.0.0.1",
        "user_agent": "UA/1",
        "request_id": "r-1",
        "query": "_summary=true",
    }
    for path in ("/fhir/metadata", "/docs", "/fhir/auth/token"):
        _run(AuditMiddleware(app, recorder_for=lambda s: queue), {**scope, "path": path})
    assert len(queue.items) == 1  # not audited


def test_middleware_records_500_when_the_app_fails():
    async def app(scope, receive, send):
        raise RuntimeError("boom")

    queue = _Queue()
    scope = {"type": "http", "method": "DELETE", "path": "/fhir/Patient/x", "query_string": b"", "headers": []}
    with pytest.raises(RuntimeError):
        _run(AuditMiddleware(app, recorder_for=lambda s: queue), scope)
    row = _as_dict(request_row(queue.items[0]))
    assert (row["interaction"], row["action"], row["status"], row["address"]) == ("delete", "D", 500, None)


def test_mixed_rows_in_one_batch_are_all_written(db):
    """Anonymous, base and full rows, across the SQLite multi-row statement boundary, in one flush."""
    rec = AuditRecorder(db, max_batch=1000)
    for i in range(250):
        rec.record(_raw(f"/fhir/Patient/p{i}"))
        if i % 3 == 0:
            rec.record(_raw("/fhir/Observation", query=f"subject=Patient/p{i}".encode(), status=400))
        if i % 5 == 0:  # auth off (the open principal is "anonymous"), or refused before its token was read
            rec.record(_raw(f"/fhir/Encounter/e{i}", client_id="anonymous" if i % 2 else None, organization_id=None))
    assert rec.flush() == 250 + 84 + 50 and rec.dropped == 0
    with db.read() as conn:
        events, _ = search_audit(conn, [("_count", "1000")], default_count=1000, max_count=1000)
        reads, _ = search_audit(conn, [("subtype", "read"), ("entity", "Patient/p249"), ("agent", "org-9")], default_count=10, max_count=10)
        failed, _ = search_audit(conn, [("outcome", "4"), ("entity-type", "Observation")], default_count=1000, max_count=1000)
        by_client, _ = search_audit(conn, [("agent:identifier", "simrs-1")], default_count=1000, max_count=1000)
        anonymous, _ = search_audit(conn, [("entity-type", "Encounter")], default_count=1000, max_count=1000)
        by_anonymous, _ = search_audit(conn, [("agent:identifier", "anonymous")], default_count=1000, max_count=1000)
        stored = conn.exec_driver_sql("SELECT count(*) FROM audit_events WHERE client_id IS NULL").scalar()
    assert len(events) == 384 and len({e["id"] for e in events}) == 384
    assert len(reads) == 1 and reads[0]["agent"][0]["who"]["identifier"]["value"] == "simrs-1"
    assert reads[0]["agent"][0]["network"]["address"] == "10.0.0.7"
    assert len(failed) == 84 and all(e["entity"][0]["query"] for e in failed)
    assert len(by_client) == 334  # the anonymous events are not the client's
    assert len(anonymous) == 50 and stored == 50
    assert {e["agent"][0]["who"]["identifier"]["value"] for e in anonymous} == {"anonymous"}
    assert {e["id"] for e in by_anonymous} == {e["id"] for e in anonymous}
    assert {e["agent"][0]["network"]["address"] for e in anonymous} == {"10.0.0.7"}


def test_no_audit_call_when_auditing_is_off(tmp_path):
    from fhir_server.api.guard import RequestGuard
    from fhir_server.app import create_app
    from fhir_server.config import Settings

    def audit_for(audit: bool):
        app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'x.sqlite3'}", audit=audit, export_worker=False))
        assert AuditMiddleware not in [m.cls for m in app.user_middleware]  # the guard records, in its layer
        assert isinstance(app.outer, RequestGuard)  # the outermost layer
        return app.outer.audit_for

    assert callable(audit_for(True)) and audit_for(False) is None


def test_the_guard_records_what_it_answers_and_what_it_passes_on():
    from fhir_server.api.guard import RequestGuard

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    queue = _Queue()
    guard = RequestGuard(app, max_query_params=10, max_query_bytes=100, audit_for=lambda s: queue)
    base = {"type": "http", "method": "POST", "path": "/fhir/Patient", "query_string": b"", "headers": []}
    _run(guard, base)
    _run(guard, {**base, "method": "GET", "query_string": b"name=a%00b"})  # refused by the guard itself
    _run(guard, {**base, "method": "GET", "path": "/fhir/metadata"})  # not audited
    _run(guard, {**base, "method": "GET", "path": "/docs"})  # not FHIR
    rows = [_as_dict(request_row(item)) for item in queue.items]
    assert [(r["interaction"], r["status"], r.get("query")) for r in rows] == [("create", 201, None), ("search-type", 400, "name=a%00b")]


@pytest.mark.parametrize(
    "path",
    [
        "/fhir/Patient/p1",
        "/fhir/Patient/_history",
        "/fhir/_history/x",
        "/fhir/Patient/_search",
        "/fhir/Patient/_x",
        "/fhir//p1",
        "/fhir/Patient/",
        "/fhir/Patient/p%201",
        "/fhir/Patient/$meta",
        "/fhir/Patient/p1/",
        "/fhir/P/p1/x",
    ],
)
@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "PATCH", "DELETE", "POST", "OPTIONS"])
def test_the_fast_path_classifies_like_classify(method, path):
    interaction, res_type, res_id, operation = classify(method, path)
    row = _as_dict(request_row(_raw(path, method=method)))
    assert (row["interaction"], row["res_type"], row["res_id"]) == (interaction, res_type, res_id)
    assert row.get("operation") == (f"${operation}" if operation else None)


def test_the_cleaned_values_cache_stays_bounded_under_hostile_user_agents():
    from fhir_server.audit import request_rows

    request_rows._CLEANED.clear()
    for i in range(request_rows._CLEANED_MAX + 10):
        row = _as_dict(request_row(_raw(ua=f"UA {i} ".encode() + b"x" * 300)))
        assert row["user_agent"] == f"UA {i} ".ljust(256, "x")[:256]
    assert len(request_rows._CLEANED) == 0  # over-long agents are cleaned, never kept
    for i in range(request_rows._CLEANED_MAX + 10):
        request_row(_raw(ua=f"UA {i}".encode()))
    assert 0 < len(request_rows._CLEANED) <= request_rows._CLEANED_MAX
    assert _as_dict(request_row(_raw(ua=b"UA 7")))["user_agent"] == "UA 7"
