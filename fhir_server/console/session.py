"""Who is using the console: the signed-in user (or open access), the session cookie, CSRF.

``FHIR_AUTH=none``: the console is open as the API is (the open principal). ``token``: a user
signs in (auth/users.py); the ``console_session`` cookie (HttpOnly, SameSite=Lax, Secure over
https) names a server-side session, checked on every request, so disabling a user or signing
out ends it at once. Every form carries a CSRF token that must equal the ``console_csrf``
cookie (double submit; the cookie is HttpOnly and SameSite=Strict, so another site can
neither read it nor make the browser send it with a cross-site POST).
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import TypeVar

from fastapi import Request
from fastapi.responses import Response

from fhir_server.auth import users
from fhir_server.auth.scopes import ScopeSet
from fhir_server.service.access import OPEN, Principal

SESSION_COOKIE = "console_session"
CSRF_COOKIE = "console_csrf"
CSRF_FIELD = "csrf"


@dataclass(frozen=True, slots=True)
class Viewer:
    """The person behind a console request and what they may do."""

    principal: Principal
    #: None: open access (FHIR_AUTH=none)
    user: users.User | None

    @property
    def name(self) -> str:
        return self.user.display_name if self.user is not None else "anonymous"

    @property
    def is_admin(self) -> bool:
        return self.user is None or self.user.is_admin

    def may(self, res_type: str, action: str) -> bool:
        scopes = self.principal.scopes
        return scopes is None or scopes.allows(res_type, action)

    def has_feature(self, scope: str) -> bool:
        """A feature scope such as ``system/satusehat.write`` (open access: every one)."""
        scopes = self.principal.scopes
        return scopes is None or scopes.has_feature(scope)


OPEN_VIEWER = Viewer(OPEN, None)


class SignInRequired(Exception):
    """No signed-in user: the console answers with a redirect to its sign-in page."""


def principal_of(user: users.User) -> Principal:
    return Principal(ScopeSet.parse(users.ROLES[user.role]), user.client_id)


def viewer(request: Request) -> Viewer | None:
    """The request's viewer, or None when a sign-in is needed (cached in the scope's state)."""
    state = request.scope.setdefault("state", {})
    if "console_viewer" in state:
        return state["console_viewer"]
    st = request.app.state.fhir
    found: Viewer | None
    if st.settings.auth == "none":
        found = OPEN_VIEWER
    else:
        token = request.cookies.get(SESSION_COOKIE)
        user = None
        if token:
            with st.db.read() as conn:
                user = users.session_user(conn, token)
        found = Viewer(principal_of(user), user) if user is not None else None
    state["console_viewer"] = found
    return found


def require_viewer(request: Request) -> Viewer:
    found = viewer(request)
    if found is None:
        raise SignInRequired
    return found


def secure(request: Request) -> bool:
    """Whether cookies get the Secure flag: served over https (directly, or so says the base URL)."""
    base = request.app.state.fhir.settings.base_url
    return request.url.scheme == "https" or base.startswith("https:")


def csrf_token(request: Request) -> str:
    """The CSRF token for forms rendered by this request (the cookie's, or a new one set by
    :func:`finish`)."""
    state = request.scope.setdefault("state", {})
    token = request.cookies.get(CSRF_COOKIE) or state.get("console_new_csrf")
    if not token:
        token = state["console_new_csrf"] = secrets.token_urlsafe(24)
    return token


def csrf_ok(request: Request, submitted: object) -> bool:
    cookie = request.cookies.get(CSRF_COOKIE)
    if not cookie or not isinstance(submitted, str):
        return False
    return hmac.compare_digest(cookie.encode(), submitted.encode())


R = TypeVar("R", bound=Response)


def finish(request: Request, response: R) -> R:
    """Set the cookies this request created (a new CSRF token)."""
    new = request.scope.get("state", {}).get("console_new_csrf")
    if new:
        response.set_cookie(CSRF_COOKIE, new, httponly=True, samesite="strict", secure=secure(request), path="/")
    return response


def set_session(request: Request, response: Response, token: str) -> None:
    response.set_cookie(
        SESSION_COOKIE, token, max_age=users.SESSION_SECONDS, httponly=True, samesite="lax", secure=secure(request), path="/"
    )


def clear_session(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/")
