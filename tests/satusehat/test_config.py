"""Configuration: off when unset; ``sandbox`` / ``production`` map to the documented hosts (never
contacted by the tests); an explicit base; the client secret never in a repr."""

from __future__ import annotations

import pytest

from fhir_server.config import Settings
from fhir_server.satusehat.facility import from_settings, resolve_base


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
