"""The HTTP side of auth: the request's :class:`~fhir_server.service.access.Principal`.

With ``FHIR_AUTH=none`` every request is the open principal. With ``token`` the
bearer token is verified once per request and cached in the ASGI scope's state.
"""

from __future__ import annotations

from fastapi import Request

from fhir_server.auth.guard import authenticate
from fhir_server.service.access import OPEN, Principal

__all__ = ["OPEN", "Principal", "principal"]


def principal(request: Request) -> Principal:
    """The request's principal (verified once, then cached in the scope's state, which is
    what ``request.state`` wraps: read here without building Starlette's State object)."""
    state = request.scope.setdefault("state", {})
    cached = state.get("principal")
    if cached is not None:
        return cached
    st = request.app.state.fhir
    if st.settings.auth == "none":
        found = OPEN
    else:
        claims = authenticate(request.headers.get("authorization"), st.token_verifier())
        found = Principal(claims.scopes, claims.client_id, claims.organization_id)
    state["principal"] = found
    return found
