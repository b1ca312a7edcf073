"""The admin pages: OAuth clients and console users.

Neither is FHIR data: they are managed with the same functions as ``fhir-server clients`` and
``fhir-server users`` (``fhir_server/auth/``). Every change leaves an AuditEvent with the admin as
the agent, written in the change's own transaction (operation ``$console-client-add``,
``-client-revoke``, ``$console-user-add``, ``-user-disable``, ``-user-role``, ``-user-password``;
what it changed in the entity's query); a refusal (not an admin) leaves one with 403.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.engine import Connection

from fhir_server.audit.events import AuditRecord
from fhir_server.audit.recorder import record_in
from fhir_server.auth import clients as oauth_clients
from fhir_server.auth import users
from fhir_server.errors import FhirError, Issue

from .render import page
from .routes import _form, console_page, router
from .session import Viewer, require_viewer


def _record(request: Request, v: Viewer, operation: str, status: int, **what: str) -> AuditRecord:
    client = request.scope.get("client")
    return AuditRecord(
        "operation",
        status,
        operation=operation,
        query=urlencode(what) or None,
        client_id=v.principal.client_id,
        address=client[0] if client else None,
        user_agent=request.headers.get("user-agent"),
    )


def _admin(request: Request, v: Viewer, operation: str) -> None:
    """403 page unless ``v`` is an admin; the refusal is audited."""
    if not v.is_admin:
        request.app.state.fhir.recorder.record(_record(request, v, operation, 403))
        raise FhirError(403, [Issue("error", "forbidden", "admin role required")])


def _audited(request: Request, conn: Connection, v: Viewer, operation: str, **what: str) -> None:
    record_in(conn, _record(request, v, operation, 200, **what))


# -- OAuth clients ---------------------------------------------------------------------------
@router.get("/console/clients", response_class=HTMLResponse)
@console_page
async def clients_page(request: Request) -> Response:
    _admin(request, require_viewer(request), "console-clients")
    with request.app.state.fhir.db.read() as conn:
        found = oauth_clients.list_clients(conn)
    return page(request, "clients.html", clients=found, secret=None, error="")


@router.post("/console/clients", response_class=HTMLResponse)
@console_page
async def clients_change(request: Request) -> Response:
    v = require_viewer(request)
    _admin(request, v, "console-client-change")
    form = await _form(request)
    st = request.app.state.fhir
    secret, error = None, ""
    try:
        with st.db.write() as conn:
            if form.get("revoke"):
                client_id = str(form["revoke"])
                if not oauth_clients.revoke_client(conn, client_id):
                    raise oauth_clients.ClientError(f"no client {client_id}")
                _audited(request, conn, v, "console-client-revoke", client=client_id)
            else:
                scopes = str(form.get("scopes") or "")
                added, secret = oauth_clients.add_client(conn, name=str(form.get("name") or "").strip() or "client", scopes=scopes)
                _audited(request, conn, v, "console-client-add", client=added, scopes=scopes)
    except (oauth_clients.ClientError, ValueError) as exc:
        error, secret = str(exc), None
    with st.db.read() as conn:
        found = oauth_clients.list_clients(conn)
    return page(request, "clients.html", 400 if error else 200, clients=found, secret=secret, error=error)


# -- console users ---------------------------------------------------------------------------
@router.get("/console/users", response_class=HTMLResponse)
@console_page
async def users_page(request: Request) -> Response:
    _admin(request, require_viewer(request), "console-users")
    return _users(request, "", "")


def _users(request: Request, done: str, error: str) -> Response:
    with request.app.state.fhir.db.read() as conn:
        found = users.list_users(conn)
    return page(request, "users.html", 400 if error else 200, users=found, roles=list(users.ROLES), done=done, error=error)


@router.post("/console/users", response_class=HTMLResponse)
@console_page
async def users_change(request: Request) -> Response:
    """``add``, ``disable``, ``role`` (a new role) or ``password`` (a new password); an admin
    cannot disable or demote themselves (the server would be left without one by mistake)."""
    v = require_viewer(request)
    _admin(request, v, "console-user-change")
    form = await _form(request)
    action, username = str(form.get("action") or ""), str(form.get("username") or "").strip()
    role, password = str(form.get("role") or ""), str(form.get("password") or "")
    myself = v.user is not None and v.user.username == username
    try:
        if myself and action in ("disable", "role") and not (action == "role" and role == "admin"):
            raise users.UserError("you cannot disable or demote your own account")
        with request.app.state.fhir.db.write() as conn:
            found = _change_user(conn, action, username, role, password, str(form.get("name") or "").strip() or None)
            if not found:
                raise users.UserError(f"no user '{username}'")
            what: dict[str, Any] = {"user": username, **({"role": role} if action in ("add", "role") else {})}
            _audited(request, conn, v, f"console-user-{action}", **what)
    except users.UserError as exc:
        return _users(request, "", str(exc))
    return _users(request, f"{action} {username}", "")


def _change_user(conn: Connection, action: str, username: str, role: str, password: str, name: str | None) -> bool:
    """The CLI's functions (``fhir-server users``); False: no such user."""
    if action == "add":
        users.add_user(conn, username, password, role, name)
        return True
    if action == "disable":
        return users.disable_user(conn, username)
    if action == "role":
        return users.set_role(conn, username, role)
    if action == "password":
        return users.reset_password(conn, username, password)
    raise users.UserError("action must be add, disable, role or password")
