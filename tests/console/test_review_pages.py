"""The duplicate-review and subscriptions pages (open mode; the same pipeline as the API)."""

from __future__ import annotations

import re

from fhir_server.service.mpi_scan import DuplicateScan
from tests.console import data
from tests.console.helpers import csrf_of, post


def _pair(client) -> tuple[str, str]:
    a = post(client, "Patient", data.patient())
    b = post(client, "Patient", data.patient(name=[{"text": "Siti Rahayu"}]))
    DuplicateScan(client.app.state.fhir.db).run()
    return a, b


def test_duplicate_pairs_show_both_people_and_the_reasons(client):
    a, b = _pair(client)
    html = client.get("/console/duplicates").text
    assert f'href="/console/patients/{a}"' in html and f'href="/console/patients/{b}"' in html
    assert re.search(r'class="grade (certain|probable)"', html)
    assert "NIK" in html[html.index('<ul class="reasons">') :]


def test_not_a_duplicate_removes_the_pair(client):
    _pair(client)
    html = client.get("/console/duplicates").text
    a, b = re.findall(r'name="(?:a|b)" value="([^"]+)"', html)[:2]
    r = client.post(
        "/console/duplicates", data={"csrf": csrf_of(html), "a": a, "b": b, "decision": "not-duplicate"}, follow_redirects=False
    )
    assert r.status_code == 303
    assert 'name="a"' not in client.get("/console/duplicates").text


def test_merge_b_into_a(client):
    _pair(client)
    html = client.get("/console/duplicates").text
    a, b = re.findall(r'name="(?:a|b)" value="([^"]+)"', html)[:2]
    r = client.post("/console/duplicates", data={"csrf": csrf_of(html), "a": a, "b": b, "decision": "merge"})
    assert r.status_code == 200
    source = client.get(f"/fhir/Patient/{b}").json()
    assert source.get("active") is False and any(link["other"]["reference"] == f"Patient/{a}" for link in source.get("link", []))


def test_decisions_need_the_csrf_token(client):
    a, b = _pair(client)
    client.get("/console/duplicates")
    assert client.post("/console/duplicates", data={"a": a, "b": b, "decision": "merge"}).status_code == 403
    assert client.get(f"/fhir/Patient/{b}").json().get("active") is None


def test_subscriptions_page_lists_status_criteria_and_endpoint(client):
    sub = {
        "resourceType": "Subscription",
        "status": "off",
        "reason": "console test",
        "criteria": "Encounter?status=finished",
        "channel": {"type": "rest-hook", "endpoint": "https://simrs.example.id/hook", "payload": "application/fhir+json"},
    }
    sid = post(client, "Subscription", sub)
    html = client.get("/console/subscriptions").text
    row = html[html.index(f'href="/console/browse/Subscription/{sid}"') :]
    assert "Encounter?status=finished" in row and "https://simrs.example.id/hook" in row and ">off<" in row
