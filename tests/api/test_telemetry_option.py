"""FHIR_OPENTELEMETRY: FastAPI's native OpenTelemetry hook is off unless asked for."""

from __future__ import annotations

import inspect

import pytest
from fastapi import FastAPI

from fhir_server.app import create_app
from fhir_server.config import Settings

pytestmark = pytest.mark.skipif(
    "telemetry" not in inspect.signature(FastAPI.__init__).parameters, reason="this FastAPI has no native telemetry to switch"
)


def test_off_by_default(tmp_path):
    settings = Settings.from_env({"FHIR_DATABASE_URL": f"sqlite:///{tmp_path / 'a.db'}"})
    app = create_app(settings)
    assert not any(app._telemetry[k] for k in ("tracing", "metrics", "logs"))


def test_on_when_asked(tmp_path):
    settings = Settings.from_env({"FHIR_DATABASE_URL": f"sqlite:///{tmp_path / 'a.db'}", "FHIR_OPENTELEMETRY": "true"})
    app = create_app(settings)
    assert all(app._telemetry[k] for k in ("tracing", "metrics", "logs"))
