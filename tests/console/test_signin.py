"""FHIR_AUTH=token: console users sign in; roles map onto scopes; sessions, CSRF and lock-out;
every console action goes through the pipeline and leaves an AuditEvent naming the user."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from fhir_server.app import create_app
from fhir_server.auth import users
from fhir_server.config import Settings
from tests.conftest import BACKENDS, database
from tests.console import data
from tests.console.helpers import browser as new_browser
from tests.console.helpers import csrf_of
from tests.waiting import wait_until

pytestmark = pytest.mark.slow  # each backend starts an app on a fresh database (migrations and seeding)

PASSWORD = "rahasia-sekali-123"


@pytest.fixture(scope="module", params=BACKENDS)
def secured(request, tmp_path_factory) -> Iterator[TestClient]:
    with database(request.param, tmp_path_factory.mktemp("console")) as url:
        app = create_app(Settings(database_url=url, auth="token", base_url="http://testserver/fhir"))
        with TestClient(app) as c:
            with app.state.fhir.db.write() as conn:
                for role in users.ROLES:
                    users.add_user(conn, role, PASSWORD, role, f"Test {role}")
            yield c


def sign_in(client: TestClient, username: str, password: str = PASSWORD) -> TestClient:
    """A fresh browser (its own cookies) signed in as ``username``."""
    browser = new_browser(client)
    form = browser.get("/console/login").text
    r = browser.post("/console/login", data={"csrf": csrf_of(form), "username": username, "password": password, "next": "/console"})
    assert r.status_code == 200, r.text  # followed the redirect to /console
    return browser


def test_console_asks_for_a_sign_in_and_the_api_still_wants_a_token(secured):
    browser = new_browser(secured)
    r = browser.get("/console?nik=1", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/console/login?next=/console%3Fnik%3D1"
    assert browser.get("/fhir/Patient").status_code == 401
    landing = browser.get("/").text
    assert "data-type=" not in landing  # no counts before signing in


def test_sign_in_sets_a_hardened_session_cookie_and_sign_out_ends_it(secured):
    browser = new_browser(secured)
    form = browser.get("/console/login").text
    r = browser.post(
        "/console/login",
        data={"csrf": csrf_of(form), "username": "viewer", "password": PASSWORD, "next": "/console"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/console"
    cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("console_session="))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie  # plain http in the test
    page = browser.get("/console")
    assert page.status_code == 200 and "Test viewer" in page.text
    out = browser.post("/console/logout", data={"csrf": csrf_of(page.text)}, follow_redirects=False)
    assert out.status_code == 303
    browser.cookies.set("console_session", cookie.split(";")[0].split("=", 1)[1])  # a copied cookie is dead too
    assert browser.get("/console", follow_redirects=False).status_code == 303


def test_cookies_are_secure_behind_https(secured):
    browser = new_browser(secured, "https://testserver")
    form = browser.get("/console/login")
    assert "Secure" in form.headers["set-cookie"]  # the CSRF cookie
    r = browser.post(
        "/console/login", data={"csrf": csrf_of(form.text), "username": "viewer", "password": PASSWORD}, follow_redirects=False
    )
    assert "Secure" in next(h for h in r.headers.get_list("set-cookie") if h.startswith("console_session="))


def test_sign_in_without_the_csrf_token_is_refused(secured):
    browser = new_browser(secured)
    browser.get("/console/login")
    r = browser.post("/console/login", data={"username": "viewer", "password": PASSWORD}, follow_redirects=False)
    assert r.status_code == 403 and "console_session" not in r.headers.get("set-cookie", "")


def test_repeated_failures_lock_the_account(secured):
    with secured.app.state.fhir.db.write() as conn:
        users.add_user(conn, "locky", PASSWORD, "viewer")
    browser = new_browser(secured)
    form = browser.get("/console/login").text
    token = csrf_of(form)
    for _ in range(users.MAX_FAILURES - 1):
        r = browser.post("/console/login", data={"csrf": token, "username": "locky", "password": "wrong-password!"})
        assert r.status_code == 401 and "salah" in r.text
    r = browser.post("/console/login", data={"csrf": token, "username": "locky", "password": "wrong-password!"})
    assert r.status_code == 401 and "dikunci" in r.text
    r = browser.post("/console/login", data={"csrf": token, "username": "locky", "password": PASSWORD}, follow_redirects=False)
    assert r.status_code == 401 and "dikunci" in r.text  # even the right password, while locked
    # every attempt is in the audit trail, the locked ones told apart (written by the app's own
    # flusher: calling recorder.flush() from this thread races it and can write a batch twice)
    admin = sign_in(secured, "admin")

    def rows() -> list[str]:
        log = admin.get("/console/audit?agent=console:locky").text
        return re.findall(r"<tr><td>.*?</tr>", log[log.index('id="audit-rows"') :], re.S) if 'id="audit-rows"' in log else []

    found = wait_until(lambda: rows() if len(rows()) >= users.MAX_FAILURES + 1 else None, message="the sign-in attempts' AuditEvents")
    assert len(found) == users.MAX_FAILURES + 1 and all("console-login" in r for r in found)
    assert sum("HTTP 423" in r for r in found) == 2 and sum("HTTP 401" in r for r in found) == users.MAX_FAILURES - 1


def test_a_disabled_user_is_signed_out_at_once(secured):
    with secured.app.state.fhir.db.write() as conn:
        users.add_user(conn, "leaver", PASSWORD, "clerk")
    browser = sign_in(secured, "leaver")
    with secured.app.state.fhir.db.write() as conn:
        assert users.disable_user(conn, "leaver")
    assert browser.get("/console", follow_redirects=False).status_code == 303
    form = browser.get("/console/login").text
    r = browser.post("/console/login", data={"csrf": csrf_of(form), "username": "leaver", "password": PASSWORD})
    assert r.status_code == 401


def _import_fields(browser: TestClient) -> dict[str, str]:
    token = csrf_of(browser.get("/console").text)
    return {"csrf": token, "kind": "dukcapil", "payload": (data.FIXTURES / "dukcapil_call_nik.json").read_text()}


def test_a_viewer_cannot_import_or_edit(secured):
    viewer = sign_in(secured, "viewer")
    assert viewer.get("/console/import").status_code == 403
    fields = _import_fields(viewer)
    for path in ("/console/import", "/console/import/run"):
        r = viewer.post(path, data=fields)
        assert r.status_code == 403 and "Akses ditolak" in r.text, path
    r = viewer.post("/console/browse/Patient/x", data={"csrf": fields["csrf"], "resource": "{}", "action": "save"})
    assert r.status_code == 403
    for decision in ("not-duplicate", "merge"):
        r = viewer.post("/console/duplicates", data={"csrf": fields["csrf"], "a": "x", "b": "y", "decision": decision})
        assert r.status_code == 403, decision
    assert viewer.get("/console/clients").status_code == 403  # admin pages
    assert viewer.get("/console/audit").status_code == 403  # the audit trail needs system/AuditEvent.rs


def test_a_clerk_imports_and_the_audit_trail_names_the_clerk(secured):
    clerk = sign_in(secured, "clerk")
    fields = _import_fields(clerk)
    assert "Data baru" in clerk.post("/console/import", data=fields).text or "Patient/" in clerk.post("/console/import", data=fields).text
    done = clerk.post("/console/import/run", data=fields)
    assert done.status_code == 200 and 'id="import-done"' in done.text
    found = clerk.get(f"/console?nik={data.NIK}").text
    assert "SITI RAHAYU" in found
    admin = sign_in(secured, "admin")

    def logged() -> str | None:
        log = admin.get("/console/audit?agent=console:clerk").text
        return log if "import-dukcapil" in log and "search-type" in log else None

    log = wait_until(logged, message="the clerk's AuditEvents")
    rows = log[log.index('id="audit-rows"') :]
    assert "console:clerk" in rows and "import-dukcapil" in rows and "search-type" in rows
    assert "console:admin" not in rows


def test_an_admin_adds_and_revokes_an_oauth_client(secured):
    admin = sign_in(secured, "admin")
    page = admin.get("/console/clients").text
    r = admin.post("/console/clients", data={"csrf": csrf_of(page), "name": "SIMRS Puskesmas", "scopes": "system/Patient.rs"})
    assert r.status_code == 200 and 'id="secret"' in r.text
    secret = r.text.split('id="secret">')[1].split("<")[0]
    row = r.text[r.text.index("SIMRS Puskesmas") - 200 :]
    client_id = row[row.index("<code>") + 6 : row.index("</code>")]
    credentials = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    token = secured.post("/fhir/auth/token", data=credentials)
    assert token.status_code == 200 and token.json()["scope"] == "system/Patient.rs"
    bad = admin.post("/console/clients", data={"csrf": csrf_of(page), "name": "x", "scopes": "patient/*.read"})
    assert bad.status_code == 400 and "system/" in bad.text
    assert admin.post("/console/clients", data={"csrf": csrf_of(page), "revoke": client_id}).status_code == 200
    assert secured.post("/fhir/auth/token", data=credentials).status_code in (400, 401)  # revoked: no new tokens
