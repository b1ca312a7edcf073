"""Request limits answer clear 4xx OperationOutcomes; every response carries the security headers."""

from __future__ import annotations

import orjson
import pytest
from fastapi import Request
from fastapi.testclient import TestClient

from fhir_server.app import create_app
from fhir_server.config import Settings
from tests.bundles import entries


def test_security_headers_on_fhir_responses(client):
    r = client.get("/fhir/metadata")
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["cache-control"] == "no-store"
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert client.get("/fhir/Patient/nope").headers["x-content-type-options"] == "nosniff"


def test_control_characters_in_the_query_are_400(client):
    r = client.get("/fhir/Patient?name=%00abc")
    assert r.status_code == 400
    assert r.json()["issue"][0]["code"] == "invalid"


def test_too_many_parameters_and_too_long_query(client):
    assert client.get("/fhir/Patient", params=[("name", str(i)) for i in range(101)]).status_code == 400
    r = client.get("/fhir/Patient", params={"name": "x" * 20_000})
    assert r.status_code == 414
    assert r.json()["resourceType"] == "OperationOutcome"


@pytest.mark.slow
def test_json_depth_and_element_limits(tmp_path):
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'lim.sqlite3'}", max_json_depth=6, max_json_elements=50))
    with TestClient(app) as small:
        nested = {
            "resourceType": "Patient",
            "contact": [{"name": {"given": ["a"], "extension": [{"url": "http://x", "valueString": "y"}]}}],
        }
        deep = small.post("/fhir/Patient", content=orjson.dumps(nested), headers={"Content-Type": "application/fhir+json"})
        assert deep.status_code == 400 and "nested deeper" in deep.json()["issue"][0]["diagnostics"]
        many = small.post(
            "/fhir/Patient",
            content=orjson.dumps({"resourceType": "Patient", "name": [{"given": ["a"] * 60}]}),
            headers={"Content-Type": "application/fhir+json"},
        )
        assert many.status_code == 413
        assert entries(small.get("/fhir/Patient/_history").json()) == []


@pytest.mark.slow
def test_cors_when_configured(tmp_path):
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'cors.sqlite3'}", cors_origins="https://app.example.id"))
    with TestClient(app) as c:
        pre = c.options("/fhir/Patient", headers={"Origin": "https://app.example.id", "Access-Control-Request-Method": "GET"})
        assert pre.headers["access-control-allow-origin"] == "https://app.example.id"
        other = c.get("/fhir/metadata", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_postgres_statement_timeout_is_a_400(backend_url):
    if not backend_url.startswith("postgresql"):
        pytest.skip("a PostgreSQL setting: SQLite has no statement timeout")
    # nothing but the slow statement runs under the 50 ms timeout: no start-up migration or
    # seeding, no audit flush, no export worker polling (on a loaded machine or a busy
    # database server any of them may take longer, and fail the start-up instead)
    app = create_app(Settings(database_url=backend_url, statement_timeout=0.05, migrate_on_start=False, audit=False, export_worker=False))
    app.router.add_api_route("/fhir/slow-test", _sleep_route, methods=["GET"])
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.get("/fhir/slow-test")
        assert r.status_code == 400
        assert r.json()["issue"][0]["code"] == "too-costly"


async def _sleep_route(request: Request) -> None:
    with request.app.state.fhir.db.read() as conn:
        conn.exec_driver_sql("SELECT pg_sleep(1)")


@pytest.mark.slow
def test_cors_and_security_headers_on_the_fast_read_path(tmp_path):
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'fast.sqlite3'}", cors_origins="https://app.example.id"))
    with TestClient(app) as c:
        pid = c.post("/fhir/Patient", content=b'{"resourceType":"Patient"}', headers={"Content-Type": "application/fhir+json"}).json()["id"]
        r = c.get(f"/fhir/Patient/{pid}", headers={"Origin": "https://app.example.id"})
        assert r.status_code == 200 and r.headers["etag"] == 'W/"1"'
        assert r.headers["access-control-allow-origin"] == "https://app.example.id"
        assert r.headers["x-content-type-options"] == "nosniff"


def test_a_response_own_security_header_wins_and_is_not_repeated():
    from fhir_server.api.guard import SECURITY_HEADERS, with_security_headers

    own = [(b"Cache-Control", b"max-age=60"), (b"content-type", b"application/json")]
    headers = with_security_headers(own, SECURITY_HEADERS)
    assert [v for k, v in headers if k.lower() == b"cache-control"] == [b"max-age=60"]
    assert {k for k, _ in headers} >= {b"x-content-type-options", b"x-frame-options", b"referrer-policy"}
    plain = with_security_headers([(b"content-type", b"application/json")], SECURITY_HEADERS)
    assert plain == [(b"content-type", b"application/json"), *SECURITY_HEADERS]
