"""The console in a real browser: Playwright driving Debian's chromium against a real
``fhir-server serve`` (uvicorn on a loopback port, FHIR_AUTH=token), on SQLite and PostgreSQL.

Covers what issue 19 calls done: a clerk signs in, imports a Dukcapil record after its
preview, finds the patient by NIK, sees coverage, visits and the vital-signs chart; the
resource browser validates a resource; a viewer gets the 403 page; the API docs render with no
request leaving the machine; an admin retries a failed SATUSEHAT item, turns off and replays a
subscription, and manages console users. With ``CONSOLE_SCREENSHOTS=<folder>`` the main pages are saved
there (docs/console/ holds the ones the docs show).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest
from typer.testing import CliRunner

from fhir_server.cli import app as cli
from fhir_server.satusehat import store as ss_store
from fhir_server.storage.db import Database
from fhir_server.timeutil import now_us
from tests.conftest import BACKENDS, database
from tests.console import data
from tests.e2e.server import ServerProcess
from tests.subscriptions.receiver import Receiver
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PASSWORD = "rahasia-sekali-123"
DESKTOP = {"width": 1366, "height": 768}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module", params=BACKENDS)
def server(request, tmp_path_factory) -> Iterator[ServerProcess]:
    env = {
        "FHIR_AUTH": "token",
        # the SATUSEHAT sync configured, its worker off (the test puts the items' states itself)
        "FHIR_SATUSEHAT_URL": "http://127.0.0.1:9/",
        "FHIR_SATUSEHAT_CLIENT_ID": "cid",
        "FHIR_SATUSEHAT_CLIENT_SECRET": "browser-test-secret",
        "FHIR_SATUSEHAT_ORGANIZATION_ID": "100025753",
        "FHIR_SATUSEHAT_WORKER": "false",
        "FHIR_SUBSCRIPTION_ALLOWED_NETWORKS": "127.0.0.1/32",
    }
    folder = tmp_path_factory.mktemp("browser")
    with database(request.param, folder) as url, ServerProcess(url, env=env, log=folder / "server.log") as srv:
        srv.url = url  # type: ignore[attr-defined]
        runner = CliRunner()
        for role in ("clerk", "viewer", "admin"):
            r = runner.invoke(
                cli, ["users", "add", role, "--role", role, "--name", f"Petugas {role}", "--password", PASSWORD, "--database-url", url]
            )
            assert r.exit_code == 0, r.output
        r = runner.invoke(cli, ["clients", "add", "--name", "seeder", "--scope", "system/*.cruds", "--json", "--database-url", url])
        srv.client = json.loads(r.output)  # type: ignore[attr-defined]
        yield srv


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail("the browser tests need Debian's chromium: apt-get install chromium (.ci/run installs it)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield b
        b.close()


def _shots() -> Path | None:
    folder = os.environ.get("CONSOLE_SCREENSHOTS")
    if not folder:
        return None
    Path(folder).mkdir(parents=True, exist_ok=True)
    return Path(folder)


def _offline_page(browser, server: ServerProcess, viewport: dict[str, int] = DESKTOP):
    """A page in a fresh context that may load nothing from anywhere but the server: any other
    request is aborted and remembered in ``page.outside``."""
    context = browser.new_context(viewport=viewport, locale="id-ID")
    page = context.new_page()
    page.outside = []  # type: ignore[attr-defined]

    def route(r) -> None:
        host = urlparse(r.request.url).hostname
        if r.request.url.startswith(("data:", "blob:")) or host == "127.0.0.1":
            r.continue_()
        else:
            page.outside.append(r.request.url)  # type: ignore[attr-defined]
            r.abort()

    page.route("**/*", route)
    return page


def _root(server: ServerProcess) -> str:
    return server.base.removesuffix("/fhir")


def _sign_in(page, server: ServerProcess, username: str) -> None:
    page.goto(f"{_root(server)}/console")
    assert "/console/login" in page.url
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("form button[type=submit]")
    page.wait_for_url(f"{_root(server)}/console")


def _api(server: ServerProcess) -> dict[str, str]:
    token = httpx.post(
        f"{server.base}/auth/token",
        data={"grant_type": "client_credentials", **server.client, "scope": "system/*.cruds"},  # type: ignore[attr-defined]
    ).json()["access_token"]
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}


def _seed_visits(server: ServerProcess, patient_id: str) -> None:
    headers = _api(server)
    resources = [data.coverage(patient_id), data.condition(patient_id)]
    resources += [data.encounter(patient_id, day) for day in (3, 10, 17, 24)]
    resources += [data.heart_rate(patient_id, day, v) for day, v in ((3, 88), (10, 80), (17, 76), (24, 72))]
    for resource in resources:
        r = httpx.post(f"{server.base}/{resource['resourceType']}", json=resource, headers=headers)
        assert r.status_code == 201, r.text


def test_clerk_imports_finds_by_nik_and_reads_the_patient_page(server, browser):
    shots = _shots()
    page = _offline_page(browser, server)
    page.goto(_root(server) + "/")
    assert page.inner_text("#status") and page.inner_text("#engine") in ("sqlite", "postgresql")
    page.goto(f"{_root(server)}/console")
    if shots:
        page.screenshot(path=str(shots / "login.png"))
    _sign_in(page, server, "clerk")

    # national import: preview first, then import
    page.click("text=Impor nasional")
    page.select_option("select[name=kind]", "dukcapil")
    page.fill("textarea[name=payload]", (data.FIXTURES / "dukcapil_call_nik.json").read_text())
    page.click("button[value=preview]")
    page.wait_for_selector("section.preview")
    assert "Data baru" in page.inner_text("section.preview")
    if shots:
        page.screenshot(path=str(shots / "import-preview.png"), full_page=True)
    page.click("#do-import")
    page.wait_for_selector("#import-done")
    location = page.inner_text("#import-done a")
    assert location.startswith("Patient/")
    # the same person again with a new address: the preview names the record and the change
    page.fill("textarea[name=payload]", (data.FIXTURES / "dukcapil_call_nik.json").read_text().replace("MAWAR NO. 7", "MELATI NO. 9"))
    page.click("button[value=preview]")
    page.wait_for_selector("table.changes")
    changes = page.inner_text("table.changes")
    assert "address" in changes and "MELATI NO. 9" in changes and "MAWAR NO. 7" in changes
    if shots:
        page.screenshot(path=str(shots / "import-changes.png"), full_page=True)
    _seed_visits(server, location.split("/")[1])

    page.goto(_root(server) + "/")
    assert page.inner_text("td[data-type=Patient]") == "1" and page.inner_text("td[data-type=Encounter]") == "4"
    if shots:
        page.screenshot(path=str(shots / "landing.png"))

    # find by NIK, open the patient
    page.goto(f"{_root(server)}/console")
    page.fill("#by-nik input[name=nik]", data.NIK)
    page.click("#by-nik button")
    page.wait_for_selector("#results")
    if shots:
        page.screenshot(path=str(shots / "find-by-nik.png"))
    # by name and birth date: Patient/$match, with the grade and the reasons
    page.fill("#by-name input[name=name]", "Siti Rahayu")
    page.fill("#by-name input[name=birthdate]", "1990-06-05")
    page.click("#by-name button")
    page.wait_for_selector("#results .reasons")
    assert page.locator("#results .grade").count() == 1
    if shots:
        page.screenshot(path=str(shots / "find-by-name.png"))
    page.click("#results a")
    page.wait_for_selector("#patient-name")
    assert page.inner_text("#patient-name") == "SITI RAHAYU"
    assert "Aktif" in page.inner_text("#coverage")
    assert "Jawa Barat" in page.inner_text("#nik-facts") and "tidak sesuai" not in page.inner_text("#nik-facts")
    assert page.locator("#encounters li").count() == 4
    chart = page.locator("svg.chart").first
    assert chart.is_visible() and chart.locator("circle").count() == 4
    box = chart.bounding_box()
    assert box and box["width"] > 250  # drawn at a readable size at 1366x768
    if shots:
        page.screenshot(path=str(shots / "patient.png"), full_page=True)
        phone = _offline_page(browser, server, PHONE)
        phone.context.add_cookies(page.context.cookies())
        phone.goto(page.url)
        phone.screenshot(path=str(shots / "patient-phone.png"), full_page=True)
        assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")  # no sideways scrolling
        assert phone.outside == []

    # the resource browser: search form, result, raw JSON, validate
    page.goto(f"{_root(server)}/console/browse")
    page.fill("#type-filter", "Patie")
    assert page.locator("#types li:not([hidden])").count() < 5
    page.click("#types a:text-is('Patient')")
    page.fill("#search-form input[name=birthdate]", "1990-06-05")
    page.click("#search-form button")
    page.click("#results a")
    page.click("button[value=validate]")
    page.wait_for_selector("#valid")
    if shots:
        page.screenshot(path=str(shots / "resource-browser.png"))
    page.context.set_extra_http_headers({})
    assert page.outside == []  # type: ignore[attr-defined]


def test_viewer_gets_the_403_page_for_imports(server, browser):
    page = _offline_page(browser, server)
    _sign_in(page, server, "viewer")
    response = page.goto(f"{_root(server)}/console/import")
    assert response is not None and response.status == 403
    assert "Akses ditolak" in page.inner_text("main")
    page.goto(f"{_root(server)}/console/lang/en?next=/console/import")
    assert "Forbidden" in page.inner_text("main")


def test_admin_reads_who_looked_at_a_record_in_the_audit_log(server, browser):
    page = _offline_page(browser, server)
    _sign_in(page, server, "admin")
    header = page.locator("header.top").bounding_box()
    assert header and header["height"] < 60  # every admin link on one line at 1366x768
    page.goto(f"{_root(server)}/console?nik=3204150101900009")

    def logged() -> bool:
        page.goto(f"{_root(server)}/console/audit?agent=console:admin&entity-type=Patient")
        return page.locator("#audit-rows tbody tr").count() > 0

    wait_until(logged, message="the admin's search in the audit log")
    assert "console:admin" in page.inner_text("#audit-rows")
    assert "Patient?identifier=https://fhir.kemkes.go.id/id/nik|3204150101900009" in page.inner_text("#audit-rows")
    if _shots():
        page.screenshot(path=str(_shots() / "audit-log.png"))  # type: ignore[operator]
    assert page.outside == []  # type: ignore[attr-defined]


def test_api_docs_render_offline(server, browser):
    page = _offline_page(browser, server)
    page.goto(f"{_root(server)}/docs")
    page.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
    assert "fhir-server-id" in page.inner_text(".swagger-ui .info .title")
    page.wait_for_selector(".opblock", timeout=30_000)
    assert page.locator(".opblock").count() > 10
    if _shots():
        page.screenshot(path=str(_shots() / "api-docs.png"))  # type: ignore[operator]
    assert page.outside == []  # type: ignore[attr-defined]


def _sync_states(server: ServerProcess) -> dict[str, str]:
    """Two Encounters the SATUSEHAT sync has seen: one refused (rule 10121, with SATUSEHAT's
    OperationOutcome), one held (no NIK). The items are put in the database as the worker would."""
    ids = {}
    for name in ("failed", "held"):
        visit = {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"}, "period": {"start": "2026-03-02T01:30:00Z"}}
        r = httpx.post(f"{server.base}/Encounter", json=visit, headers=_api(server))
        assert r.status_code == 201, r.text
        ids[name] = r.json()["id"]
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [
            {"severity": "error", "code": "business-rule", "details": {"text": "Encounter.period.end wajib diisi [RuleNumber: 10121]"}}
        ],
    }
    db = Database.from_url(server.url, pool_size=1)  # type: ignore[attr-defined]
    try:
        now = now_us()
        with db.write() as conn:
            for name, res_id in ids.items():
                ss_store.noted(conn, "Encounter", res_id, 1, "default", f"default|{res_id}", now)
                item = ss_store.get(conn, "Encounter", res_id)
                assert item is not None
                if name == "failed":
                    ss_store.update(
                        conn,
                        item,
                        now,
                        status="failed",
                        attempts=1,
                        last_attempt_us=now,
                        rule="10121",
                        outcome=json.dumps(outcome),
                        last_error="SATUSEHAT menolak Encounter (HTTP 400)",
                    )
                else:
                    ss_store.update(conn, item, now, status="held", last_error="Patient tidak punya NIK")
    finally:
        db.dispose()
    return ids


def _no_sideways_scroll(page) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"))


def test_admin_sync_page_retries_a_failed_resource(server, browser):
    ids = _sync_states(server)
    viewer = _offline_page(browser, server)
    _sign_in(viewer, server, "viewer")
    response = viewer.goto(f"{_root(server)}/console/satusehat")
    assert response is not None and response.status == 403  # no system/satusehat.read
    page = _offline_page(browser, server)
    _sign_in(page, server, "admin")
    page.click("header nav a:text-is('SATUSEHAT')")
    page.wait_for_selector("#ss-items")
    row = page.locator(f"#ss-items tr:has(a:text-is('Encounter/{ids['failed']}'))")
    assert "10121" in row.inner_text() and "wajib diisi" in row.inner_text()
    assert page.locator("#ss-counts tr[data-facility=default] a[data-status=failed]").inner_text() != "0"
    if _shots():
        page.screenshot(path=str(_shots() / "satusehat.png"), full_page=True)  # type: ignore[operator]
        phone = _offline_page(browser, server, PHONE)
        phone.context.add_cookies(page.context.cookies())
        phone.goto(page.url)
        phone.screenshot(path=str(_shots() / "satusehat-phone.png"), full_page=True)  # type: ignore[operator]
        assert _no_sideways_scroll(phone) and phone.outside == []  # type: ignore[attr-defined]
    row.locator("button", has_text="Kirim ulang").click()
    page.wait_for_selector("#done")
    assert f"Encounter/{ids['failed']}" in page.inner_text("#done")
    page.select_option("#ss-filter select[name=status]", "pending")
    page.click("#ss-filter button")
    page.wait_for_selector(f"#ss-items a:text-is('Encounter/{ids['failed']}')")
    page.goto(f"{_root(server)}/console/satusehat?status=held")
    assert "Patient tidak punya NIK" in page.inner_text("#ss-items")
    page.click("a.lang")  # English, on the same list
    assert "status=held" in page.url and "Held" in page.inner_text("#ss-filter") and "Retry" in page.inner_text("#ss-items")
    page.goto(f"{_root(server)}/console/lang/id?next=/console")
    assert page.outside == []  # type: ignore[attr-defined]


def test_admin_turns_a_subscription_off_and_replays_it(server, browser):
    receiver = Receiver().start()
    try:
        headers = _api(server)
        sub = {
            "resourceType": "Subscription",
            "status": "requested",
            "reason": "SIMRS: pasien baru",
            "criteria": "Patient?family=Lestari",
            "channel": {"type": "rest-hook", "endpoint": receiver.url, "header": ["Authorization: Bearer simrs-rahasia"]},
        }
        sub_id = httpx.post(f"{server.base}/Subscription", json=sub, headers=headers).json()["id"]
        wait_until(lambda: httpx.get(f"{server.base}/Subscription/{sub_id}", headers=headers).json()["status"] == "active")
        httpx.post(f"{server.base}/Patient", json={"resourceType": "Patient", "name": [{"family": "Lestari"}]}, headers=headers)
        wait_until(lambda: len(receiver.received) == 1, message="the first notification")
        page = _offline_page(browser, server)
        _sign_in(page, server, "admin")
        page.click("header nav a:text-is('Langganan')")
        row = page.locator(f"#subscriptions tr[data-id='{sub_id}']")

        def delivered() -> bool:
            page.reload()
            return "ok · HTTP 200" in row.locator("td.last").inner_text()

        wait_until(delivered, message="the last delivery on the page")
        assert "simrs-rahasia" not in page.content()
        if _shots():
            page.screenshot(path=str(_shots() / "subscriptions.png"), full_page=True)  # type: ignore[operator]
        row.locator("input[name=from]").fill("1")
        row.locator("button[value=replay]").click()
        page.wait_for_selector("#done")
        wait_until(lambda: len(receiver.received) == 2, message="the replayed notification")
        page.locator(f"#subscriptions tr[data-id='{sub_id}'] button[value=off]").click()
        page.wait_for_selector("#done")
        assert ">off<" in page.inner_html(f"#subscriptions tr[data-id='{sub_id}']") or "off" in page.inner_text(
            f"#subscriptions tr[data-id='{sub_id}'] .badge"
        )
        assert page.outside == []  # type: ignore[attr-defined]
    finally:
        receiver.stop()


def test_admin_manages_console_users(server, browser):
    page = _offline_page(browser, server)
    _sign_in(page, server, "admin")
    page.click("header nav a:text-is('Pengguna')")
    page.fill("#add-user input[name=username]", "siti")
    page.fill("#add-user input[name=name]", "Siti Rahayu")
    page.select_option("#add-user select[name=role]", "viewer")
    page.fill("#add-user input[name=password]", "kata-sandi-siti-1")
    page.click("#add-user button[type=submit]")
    page.wait_for_selector("#users tr[data-user=siti]")
    row = page.locator("#users tr[data-user=siti]")
    row.locator("select[name=role]").select_option("clerk")
    row.locator("button[value=role]").click()
    page.wait_for_selector("#done")
    assert "clerk" in page.locator("#users tr[data-user=siti]").inner_text()
    if _shots():
        page.screenshot(path=str(_shots() / "users.png"), full_page=True)  # type: ignore[operator]
        phone = _offline_page(browser, server, PHONE)
        phone.context.add_cookies(page.context.cookies())
        phone.goto(page.url)
        phone.screenshot(path=str(_shots() / "users-phone.png"), full_page=True)  # type: ignore[operator]
        assert _no_sideways_scroll(phone)
    siti = _offline_page(browser, server)
    siti.goto(f"{_root(server)}/console")
    siti.fill("input[name=username]", "siti")
    siti.fill("input[name=password]", "kata-sandi-siti-1")
    siti.click("form button[type=submit]")
    siti.wait_for_url(f"{_root(server)}/console")
    page.locator("#users tr[data-user=siti] button[value=disable]").click()
    page.wait_for_selector("#done")
    siti.goto(f"{_root(server)}/console")
    assert "/console/login" in siti.url  # disabled: her session ended
    page.click("a.lang")
    assert page.inner_text("h1") == "Console users"
    page.goto(f"{_root(server)}/console/lang/id?next=/console")
    assert page.outside == [] and siti.outside == []  # type: ignore[attr-defined]
