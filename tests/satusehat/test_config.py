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
