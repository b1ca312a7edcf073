"""Shared helpers of the console tests."""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient

from tests.console import data

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
# where a page makes the browser fetch something: src/href attributes, CSS url(), @import
_FETCHED = re.compile(r"""(?:src|href|action|formaction)\s*=\s*["']([^"']+)["']|url\(\s*["']?([^"')]+)|@import\s+["']([^"']+)""")


def browser(client: TestClient, base_url: str = "http://testserver") -> TestClient:
    """Another browser (cookies of its own) on ``client``'s running app. Its requests run on the
    app's event loop (``client``'s portal): a TestClient of its own would run each request on a
    loop of its own, beside the loop the app's group committer and workers belong to, and a
    request whose write joined the other loop's batch was then never woken (the hang seen in
    test_operations_pages under load)."""
    other = TestClient(client.app, base_url=base_url)
    other.portal = client.portal
    return other


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "the page has no CSRF field"
    return found.group(1)


def external_references(html: str) -> list[str]:
    """Every URL the page would load or link to that is not on this server."""
    out = []
    for match in _FETCHED.finditer(html):
        url = next(g for g in match.groups() if g)
        if re.match(r"^(?:[a-z][a-z0-9+.-]*:)?//", url, re.I) or (":" in url.split("/")[0] and not url.startswith(("data:", "#"))):
            out.append(url)
    return out


def post(client: TestClient, path: str, resource: dict[str, Any]) -> str:
    r = client.post(f"/fhir/{path}", json=resource, headers={"Content-Type": "application/fhir+json"})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def seed_patient(client: TestClient, encounters: int = 3, vitals: int = 4) -> str:
    """A patient with BPJS coverage, visits, a condition and heart-rate readings; its id."""
    pid = post(client, "Patient", data.patient())
    post(client, "Coverage", data.coverage(pid))
    for day in range(1, encounters + 1):
        post(client, "Encounter", data.encounter(pid, day))
    post(client, "Condition", data.condition(pid))
    for day in range(1, vitals + 1):
        post(client, "Observation", data.heart_rate(pid, day, 70 + day * 3))
    return pid
