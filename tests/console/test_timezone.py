"""Times in the console are the facility's (FHIR_CONSOLE_TIMEZONE, Asia/Jakarta by default), not UTC."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from fhir_server.app import create_app
from fhir_server.config import ConfigError, Settings
from fhir_server.console import charts, clock
from tests.console import data
from tests.console.helpers import post

WIB = clock.zone("Asia/Jakarta")


def test_instants_are_shown_in_the_zone_dates_as_they_are():
    assert clock.local("2026-03-01T01:30:00Z", WIB) == "2026-03-01 08:30"
    assert clock.local("2026-03-01T20:30:00+00:00", WIB) == "2026-03-02 03:30"  # the next day in Jakarta
    assert clock.local("2026-03-01T09:00:00+07:00", clock.zone("Asia/Jayapura")) == "2026-03-01 11:00"
    assert clock.local("2026-03-01T20:30:00Z", WIB, date_only=True) == "2026-03-02"
    assert clock.local("2026-03-01", WIB) == "2026-03-01" and clock.local("2026-03", WIB) == "2026-03"
    assert clock.local(None, WIB) == "" and clock.local("not a time", WIB) == "not a time"
    assert clock.abbreviation(WIB) == "WIB" and clock.abbreviation(clock.zone("Asia/Makassar")) == "WITA"


def test_chart_labels_and_tooltips_use_the_zone():
    svg = charts.line_chart("Heart rate", "/min", [("2026-03-01T20:30:00Z", 80.0), ("2026-03-02T01:00:00Z", 90.0)], WIB)
    assert "<title>2026-03-02 03:30: 80 /min</title>" in svg and ">2026-03-02</text>" in svg
    assert "2026-03-01" not in svg  # no UTC date left


def test_patient_page_timeline_and_chart_in_wib(client):
    pid = post(client, "Patient", data.patient())
    visit = data.encounter(pid, 1) | {"period": {"start": "2026-03-01T20:30:00Z"}}
    post(client, "Encounter", visit)
    post(client, "Observation", data.heart_rate(pid, 1, 80) | {"effectiveDateTime": "2026-03-01T20:40:00Z"})
    html = client.get(f"/console/patients/{pid}").text
    timeline = html[html.index('id="encounters"') :]
    assert re.search(r"<time[^>]*>2026-03-02 03:30</time>", timeline) and "WIB" in timeline
    assert "<title>2026-03-02 03:40: 80 /min</title>" in html


@pytest.mark.slow
def test_the_zone_is_a_setting_and_an_unknown_one_stops_the_start(tmp_path):
    with pytest.raises(ConfigError, match="FHIR_CONSOLE_TIMEZONE"):
        create_app(Settings(database_url=f"sqlite:///{tmp_path / 'a.sqlite3'}", console_timezone="Asia/Atlantis"))
    assert Settings.from_env({"FHIR_CONSOLE_TIMEZONE": "Asia/Makassar"}).console_timezone == "Asia/Makassar"
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'b.sqlite3'}", console_timezone="Asia/Jayapura"))
    with TestClient(app) as c:
        pid = post(c, "Patient", data.patient())
        post(c, "Encounter", data.encounter(pid, 1) | {"period": {"start": "2026-03-01T00:00:00Z"}})
        html = c.get(f"/console/patients/{pid}").text
        assert re.search(r"<time[^>]*>2026-03-01 09:00</time>", html) and "WIT" in html
