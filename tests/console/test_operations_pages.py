"""FHIR_AUTH=token: the SATUSEHAT sync page, the subscriptions page and the users page, and the
audit of the admin pages. Every action is refused (403 page, nothing changed) to a role that
lacks the scope and without the CSRF token; what is allowed goes through the same operations
and write path as the API."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhir_server.app import create_app
from fhir_server.auth import clients as oauth_clients
from fhir_server.auth import users
from fhir_server.satusehat import store as ss_store
from fhir_server.subscriptions import store as sub_store
from fhir_server.timeutil import now_us
from tests.conftest import BACKENDS, database
from tests.console.helpers import csrf_of
from tests.console.test_signin import PASSWORD, sign_in
from tests.subscriptions.conftest import criteria_subscription, settings
from tests.subscriptions.receiver import Receiver
from tests.waiting import wait_until

pytestmark = pytest.mark.slow  # each backend starts an app on a fresh database

OUTCOME = {
    "resourceType": "OperationOutcome",
    "issue": [{"severity": "error", "code": "business-rule", "details": {"text": "Encounter.period.end is required [RuleNumber: 10121]"}}],
}


@pytest.fixture(scope="module", params=BACKENDS)
def secured(request, tmp_path_factory) -> Iterator[TestClient]:
    with database(request.param, tmp_path_factory.mktemp("ops")) as url:
        s = settings(
            url,
            auth="token",
            satusehat_url="http://127.0.0.1:9/",
            satusehat_client_id="cid",
            satusehat_client_secret="very-secret",
            satusehat_organization_id="100025753",
            satusehat_worker=False,  # the items stay as the tests put them
            subscription_max_failures=1,
        )
        with TestClient(create_app(s)) as c:
            with c.app.state.fhir.db.write() as conn:
                for role in users.ROLES:
                    users.add_user(conn, role, PASSWORD, role, f"Test {role}")
            yield c


def api(client: TestClient, scopes: str) -> tuple[str, dict[str, str]]:
    """A registered client's id and bearer headers."""
    with client.app.state.fhir.db.write() as conn:
        cid, secret = oauth_clients.add_client(conn, name="EMR", scopes=scopes)
    r = client.post(
        "/fhir/auth/token", data={"grant_type": "client_credentials", "client_id": cid, "client_secret": secret, "scope": scopes}
    )
    assert r.status_code == 200, r.text
    return cid, {"Authorization": f"Bearer {r.json()['access_token']}", "Content-Type": "application/fhir+json"}


def audit_rows(admin: TestClient, operation: str) -> str:
    """The admin's audit-log rows of console operation ``$operation`` (once flushed)."""
    found = ""

    def logged() -> bool:
        nonlocal found
        html = admin.get("/console/audit?agent=console:admin").text
        found = "\n".join(row for row in html.split("<tr>") if f"${operation}" in row or operation in row)
        return bool(found)

    wait_until(logged, message=f"an AuditEvent of {operation}")
    return found


# -- SATUSEHAT ---------------------------------------------------------------------------------
def _sync_items(client: TestClient) -> dict[str, str]:
    """A failed Encounter (SATUSEHAT's OperationOutcome, rule 10121) and a held one; their ids."""
    _, headers = api(client, "system/*.cruds")
    ids = {}
    for name in ("failed", "held"):
        r = client.post(
            "/fhir/Encounter", json={"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"}}, headers=headers
        )
        assert r.status_code == 201, r.text
        ids[name] = r.json()["id"]
    now = now_us()
    with client.app.state.fhir.db.write() as conn:
        for name, res_id in ids.items():
            ss_store.noted(conn, "Encounter", res_id, 1, "default", f"default|{res_id}", now)
            item = ss_store.get(conn, "Encounter", res_id)
            assert item is not None
            if name == "failed":
                ss_store.update(
                    conn, item, now, status="failed", attempts=1, last_attempt_us=now, rule="10121", outcome=json.dumps(OUTCOME)
                )
                ss_store.update(conn, item, now, last_error="SATUSEHAT refused the Encounter (HTTP 400)")
            else:
                ss_store.update(conn, item, now, status="held", last_error="the Patient has no NIK")
    return ids


def _item_status(client: TestClient, res_id: str) -> str:
    with client.app.state.fhir.db.read() as conn:
        item = ss_store.get(conn, "Encounter", res_id)
    assert item is not None
    return item.status


def test_satusehat_page_shows_failed_with_the_rule_and_held_with_the_reason(secured):
    ids = _sync_items(secured)
    clerk = sign_in(secured, "clerk")
    html = clerk.get("/console/satusehat").text
    assert 'id="not-configured"' not in html
    counts = html[html.index('id="ss-counts"') :]
    assert re.search(r'data-status="failed">[1-9]', counts) and re.search(r'data-status="held">[1-9]', counts)
    row = html[html.index(f"Encounter/{ids['failed']}") :]
    assert "10121" in row and "Encounter.period.end is required" in row and "OperationOutcome" in row
    held = clerk.get("/console/satusehat?status=held").text
    assert f"Encounter/{ids['held']}" in held and "the Patient has no NIK" in held
    assert 'action="/console/satusehat/retry"' not in html  # a clerk reads the sync, may not retry
    assert "very-secret" not in html


def test_retrying_needs_satusehat_write_and_the_csrf_token(secured):
    ids = _sync_items(secured)
    viewer, clerk, admin = (sign_in(secured, r) for r in ("viewer", "clerk", "admin"))
    page = viewer.get("/console/satusehat")
    assert page.status_code == 403 and 'href="/console/satusehat"' not in page.text  # no link either
    form = clerk.get("/console/satusehat").text
    r = clerk.post("/console/satusehat/retry", data={"csrf": csrf_of(form), "ref": f"Encounter/{ids['failed']}"})
    assert r.status_code == 403 and "system/satusehat.write" in r.text
    page = admin.get("/console/satusehat").text
    assert admin.post("/console/satusehat/retry", data={"ref": f"Encounter/{ids['failed']}"}).status_code == 403  # no CSRF token
    assert _item_status(secured, ids["failed"]) == "failed"
    r = admin.post("/console/satusehat/retry", data={"csrf": csrf_of(page), "ref": f"Encounter/{ids['failed']}"}, follow_redirects=False)
    assert r.status_code == 303
    assert _item_status(secured, ids["failed"]) == "pending"
    r = admin.post("/console/satusehat/retry", data={"csrf": csrf_of(page), "ref": f"Encounter/{ids['held']}", "status": "held"})
    assert r.status_code == 200 and "Encounter/" + ids["held"] in r.text
    assert _item_status(secured, ids["held"]) == "pending"
    assert admin.post("/console/satusehat/retry", data={"csrf": csrf_of(page), "ref": "Patient/x"}).status_code == 400
    rows = audit_rows(admin, "satusehat-sync")
    assert f"Encounter/{ids['failed']}" in rows


def test_the_api_lists_items_by_status_with_the_read_scope_only(secured):
    ids = _sync_items(secured)
    _, reader = api(secured, "system/*.rs system/satusehat.read")
    _, no_feature = api(secured, "system/*.rs")
    assert secured.get("/fhir/$satusehat-status?status=failed", headers=no_feature).status_code == 403
    assert secured.get("/fhir/$satusehat-status?status=nonsense", headers=reader).status_code == 400
    body = secured.get("/fhir/$satusehat-status?status=failed&facility=default", headers=reader).json()
    items = [{p["name"]: p for p in i["part"]} for i in body["parameter"] if i["name"] == "item"]
    mine = next(i for i in items if i["resource"]["valueReference"]["reference"] == f"Encounter/{ids['failed']}")
    assert mine["rule"]["valueString"] == "10121" and mine["outcome"]["resource"]["resourceType"] == "OperationOutcome"


def test_satusehat_page_says_when_the_sync_is_not_configured(client):
    html = client.get("/console/satusehat").text
    assert 'id="not-configured"' in html and "FHIR_SATUSEHAT_CLIENT_ID" in html
    client.get("/console/lang/en")
    assert "not configured" in client.get("/console/satusehat").text


# -- subscriptions ------------------------------------------------------------------------------
def _status(client: TestClient, sub_id: str) -> sub_store.State:
    with client.app.state.fhir.db.read() as conn:
        st = sub_store.get(conn, sub_id)
    assert st is not None
    return st


def test_subscriptions_off_reactivate_and_replay_keep_the_owner_and_hide_secrets(secured):
    receiver = Receiver(status=410).start()
    try:
        cid, emr = api(secured, "system/Subscription.cruds system/Patient.crus")
        sub = criteria_subscription(receiver.url, "Patient?family=Rahayu", header=["Authorization: Bearer emr-header-secret"])
        sub_id = secured.post("/fhir/Subscription", json=sub, headers=emr).json()["id"]
        wait_until(lambda: _status(secured, sub_id).status == "active", message="activation")
        secured.post("/fhir/Patient", json={"resourceType": "Patient", "name": [{"family": "Rahayu"}]}, headers=emr)
        wait_until(lambda: _status(secured, sub_id).status == "error", message="410 Gone puts it in error")

        viewer, admin = sign_in(secured, "viewer"), sign_in(secured, "admin")
        html = viewer.get("/console/subscriptions").text
        row = html[html.index(f'data-id="{sub_id}"') :].split("</tr>")[0]
        assert ">error<" in row and "410" in row and "Patient?family=Rahayu" in row and "rest-hook" in row
        assert 'data-label="Kejadian">1<' in row  # one event
        assert "emr-header-secret" not in html and 'name="action"' not in row  # a viewer has no buttons
        r = viewer.post("/console/subscriptions", data={"csrf": csrf_of(html), "id": sub_id, "action": "requested"})
        assert r.status_code == 403 and _status(secured, sub_id).status == "error"

        page = admin.get("/console/subscriptions").text
        assert "emr-header-secret" not in page
        assert admin.post("/console/subscriptions", data={"id": sub_id, "action": "requested"}).status_code == 403  # no CSRF
        assert _status(secured, sub_id).status == "error"
        receiver.status = 200
        r = admin.post("/console/subscriptions", data={"csrf": csrf_of(page), "id": sub_id, "action": "requested"})
        assert r.status_code == 200
        wait_until(lambda: _status(secured, sub_id).delivered == 1, message="the backlog delivered after re-activation")
        st = _status(secured, sub_id)
        assert st.status == "active" and st.client_id == cid  # still the EMR's, not console:admin
        assert st.secrets.headers == ["Authorization: Bearer emr-header-secret"]  # kept through the console's PUT
        sent = len(receiver.received)
        r = admin.post("/console/subscriptions", data={"csrf": csrf_of(page), "id": sub_id, "action": "replay", "from": "1"})
        assert r.status_code == 200
        wait_until(lambda: len(receiver.received) > sent, message="the replayed event")
        assert (
            admin.post("/console/subscriptions", data={"csrf": csrf_of(page), "id": sub_id, "action": "replay", "from": "x"}).status_code
            == 400
        )
        r = admin.post("/console/subscriptions", data={"csrf": csrf_of(page), "id": sub_id, "action": "off"})
        assert r.status_code == 200 and _status(secured, sub_id).status == "off" and _status(secured, sub_id).client_id == cid
        r = admin.post("/console/subscriptions", data={"csrf": csrf_of(page), "id": sub_id, "action": "replay", "from": "1"})
        assert r.status_code == 422  # replay only an active subscription
        assert "Subscription/" + sub_id in audit_rows(admin, "replay")
    finally:
        receiver.stop()


def test_replay_operation_needs_update_on_subscription(secured):
    receiver = Receiver().start()
    try:
        _, emr = api(secured, "system/Subscription.cruds system/Patient.crus")
        sub_id = secured.post("/fhir/Subscription", json=criteria_subscription(receiver.url, "Patient?family=X"), headers=emr).json()["id"]
        wait_until(lambda: _status(secured, sub_id).status == "active", message="activation")
        _, reader = api(secured, "system/Subscription.rs system/Patient.rs")
        body = {"resourceType": "Parameters", "parameter": [{"name": "eventsSinceNumber", "valueInteger": 1}]}
        assert secured.post(f"/fhir/Subscription/{sub_id}/$replay", json=body, headers=reader).status_code == 403
        r = secured.post(f"/fhir/Subscription/{sub_id}/$replay", json=body, headers=emr)
        assert r.status_code == 200, r.text
        assert r.json()["parameter"][0] == {"name": "events-since-subscription-start", "valueString": "0"}
        assert secured.post(f"/fhir/Subscription/{sub_id}/$replay", json={"resourceType": "Parameters"}, headers=emr).status_code == 400
    finally:
        receiver.stop()


# -- users ---------------------------------------------------------------------------------------
def _user(client: TestClient, username: str) -> users.User | None:
    with client.app.state.fhir.db.read() as conn:
        return users.get_user(conn, username)


def _change(browser: TestClient, **form: Any):
    html = browser.get("/console/users").text
    return browser.post("/console/users", data={"csrf": csrf_of(html), **form})


def test_admin_adds_changes_resets_and_disables_a_user(secured):
    admin = sign_in(secured, "admin")
    r = _change(admin, action="add", username="siti", name="Siti Rahayu", role="viewer", password="kata-sandi-siti-1")
    assert r.status_code == 200 and 'data-user="siti"' in r.text
    siti = sign_in(secured, "siti", "kata-sandi-siti-1")
    assert siti.get("/console/import").status_code == 403  # a viewer
    assert _change(admin, action="role", username="siti", role="clerk").status_code == 200
    assert siti.get("/console/import").status_code == 200  # the new role, on her next request
    assert _change(admin, action="password", username="siti", password="kata-sandi-baru-2").status_code == 200
    assert siti.get("/console", follow_redirects=False).status_code == 303  # her session ended
    siti = sign_in(secured, "siti", "kata-sandi-baru-2")
    assert _change(admin, action="disable", username="siti").status_code == 200
    assert siti.get("/console", follow_redirects=False).status_code == 303
    assert _user(secured, "siti").active is False  # type: ignore[union-attr]
    # refused with the reason, nothing changed
    assert _change(admin, action="add", username="siti", role="viewer", password="kata-sandi-siti-1").status_code == 400
    assert _change(admin, action="add", username="budi", role="viewer", password="short").status_code == 400
    assert _user(secured, "budi") is None
    assert _change(admin, action="role", username="admin", role="viewer").status_code == 400  # not herself
    assert _change(admin, action="disable", username="admin").status_code == 400
    assert _user(secured, "admin").role == "admin"  # type: ignore[union-attr]
    rows = audit_rows(admin, "console-user-disable")
    assert "user=siti" in rows or "siti" in rows
    for operation in ("console-user-add", "console-user-role", "console-user-password"):
        assert audit_rows(admin, operation)


def test_users_page_is_for_admins_and_needs_the_csrf_token(secured):
    clerk, admin = sign_in(secured, "clerk"), sign_in(secured, "admin")
    assert clerk.get("/console/users").status_code == 403
    page = clerk.get("/console").text
    r = clerk.post(
        "/console/users", data={"csrf": csrf_of(page), "action": "add", "username": "eve", "role": "admin", "password": "x" * 12}
    )
    assert r.status_code == 403 and _user(secured, "eve") is None
    r = admin.post("/console/users", data={"action": "add", "username": "eve", "role": "admin", "password": "x" * 12})
    assert r.status_code == 403 and _user(secured, "eve") is None
    assert "/console/users" not in clerk.get("/console").text  # no link for a clerk


# -- OAuth clients: audited --------------------------------------------------------------------------
def test_adding_and_revoking_a_client_is_audited_with_the_admin_as_agent(secured):
    admin, clerk = sign_in(secured, "admin"), sign_in(secured, "clerk")
    page = admin.get("/console/clients").text
    r = admin.post("/console/clients", data={"csrf": csrf_of(page), "name": "SIMRS", "scopes": "system/Patient.rs"})
    assert r.status_code == 200
    client_id = re.findall(r'name="revoke" value="([^"]+)"', r.text)[-1]
    r = admin.post("/console/clients", data={"csrf": csrf_of(page), "revoke": client_id})
    assert r.status_code == 200
    assert f"client={client_id}" in audit_rows(admin, "console-client-add").replace("%3A", ":")
    assert client_id in audit_rows(admin, "console-client-revoke")
    before = len(admin.get("/console/clients").text)
    r = clerk.post("/console/clients", data={"csrf": csrf_of(clerk.get("/console").text), "name": "X", "scopes": "system/*.rs"})
    assert r.status_code == 403 and len(admin.get("/console/clients").text) == before
