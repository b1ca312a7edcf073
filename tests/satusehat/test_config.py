"""Configuration: off when unset; ``sandbox`` / ``production`` map to the documented hosts (never
contacted by the tests); an explicit base; the client secret never in a repr; the environment's
proxy."""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fhir_server.config import Settings
from fhir_server.outbound_http import environment_proxy
from fhir_server.satusehat.client import SatusehatClient
from fhir_server.satusehat.facility import Facility, from_settings, resolve_base


def test_off_unless_every_setting_is_given():
    assert from_settings(Settings()) is None
    assert from_settings(Settings(satusehat_url="sandbox", satusehat_client_id="a", satusehat_client_secret="b")) is None


def test_keywords_and_explicit_bases():
    assert resolve_base("sandbox") == "https://api-satusehat-stg.dto.kemkes.go.id"
    assert resolve_base("production") == "https://api-satusehat.kemkes.go.id"
    f = from_settings(
        Settings(
            satusehat_url="http://127.0.0.1:9/", satusehat_client_id="c", satusehat_client_secret="s3cr3t", satusehat_organization_id="1"
        )
    )
    assert f is not None
    assert f.token_url == "http://127.0.0.1:9/oauth2/v1/accesstoken" and f.fhir_url == "http://127.0.0.1:9/fhir-r4/v1"
    with pytest.raises(ValueError):
        resolve_base("staging.example")


def test_the_secret_is_never_in_a_repr():
    s = Settings.from_env(
        {
            "FHIR_SATUSEHAT_URL": "sandbox",
            "FHIR_SATUSEHAT_CLIENT_ID": "c",
            "FHIR_SATUSEHAT_CLIENT_SECRET": "s3cr3t-value",
            "FHIR_SATUSEHAT_ORGANIZATION_ID": "1",
        }
    )
    f = from_settings(s)
    assert f is not None and f.client_secret == "s3cr3t-value"
    assert "s3cr3t-value" not in repr(s) and "s3cr3t-value" not in repr(f) and "s3cr3t-value" not in str(f.public())


def test_with_sync_off_resources_are_not_applicable(client):
    loc = {"resourceType": "Location", "id": "l1", "name": "Poli", "position": {"latitude": 1, "longitude": 2}}
    assert client.put("/fhir/Location/l1", json=loc).status_code == 201
    r = client.get("/fhir/Location/l1/$satusehat-status")
    assert r.status_code == 200, r.text
    params = {p["name"]: p for p in r.json()["parameter"]}
    assert params["status"]["valueCode"] == "not-applicable" and "never run" in params["last-error"]["valueString"]
    assert client.post("/fhir/Location/l1/$satusehat-sync").status_code == 409
    assert client.get("/fhir/Location/nope/$satusehat-status").status_code == 404
    assert client.get("/fhir/Patient/x/$satusehat-status").status_code == 404  # looked up, never sent: no such operation
    assert client.get("/fhir/$satusehat-status").json()["parameter"][0] == {"name": "pending", "valueInteger": 0}


def _clear_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "no_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


def test_the_environments_proxy_and_its_exceptions(monkeypatch):
    _clear_proxies(monkeypatch)
    assert environment_proxy("https://api-satusehat.kemkes.go.id") is None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.rs.local:3128")
    assert environment_proxy("https://api-satusehat.kemkes.go.id") == "http://proxy.rs.local:3128"
    assert environment_proxy("http://api-satusehat.kemkes.go.id") is None  # HTTP_PROXY unset
    monkeypatch.setenv("NO_PROXY", ".kemkes.go.id")
    assert environment_proxy("https://api-satusehat.kemkes.go.id") is None


def test_calls_go_through_the_environments_proxy(monkeypatch):
    """A hospital network's forward proxy: the token call reaches it as an absolute-form request
    for SATUSEHAT's host (which the test never resolves: only the loopback proxy is contacted)."""
    _clear_proxies(monkeypatch)
    seen: list[str] = []

    class Proxy(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen.append(self.path)
            body = json.dumps({"access_token": "via-proxy", "expires_in": "3599"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    proxy = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.server_address[1]}")
        facility = Facility("rs", organization_id="1", client_id="c", client_secret="s", base="http://satusehat.invalid")

        async def fetch() -> str | None:
            client = SatusehatClient(facility, timeout=10)
            try:
                return (await client.token())[0]
            finally:
                await client.aclose()

        assert asyncio.run(fetch()) == "via-proxy"
        assert seen == ["http://satusehat.invalid/oauth2/v1/accesstoken?grant_type=client_credentials"]
    finally:
        proxy.shutdown()
        proxy.server_close()
