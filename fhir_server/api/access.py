"""Who is calling and what they may do: the HTTP side of auth.

With ``FHIR_AUTH=none`` every request is the open principal (everything
allowed). With ``token`` the bearer token is verified once per request
(``fhir_server.auth``) and its scopes decide each interaction, operation,
transaction entry and included resource.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from fhir_server.audit.events import ANONYMOUS
from fhir_server.auth.guard import authenticate, readable, require_interaction, require_operation
from fhir_server.auth.scopes import ScopeSet


@dataclass(frozen=True)
class Principal:
    #: None: open access (FHIR_AUTH=none)
    scopes: ScopeSet | None
    client_id: str = ANONYMOUS
    organization_id: str | None = None

    def require(self, res_type: str | None, interaction: str, *, conditional: bool = False) -> None:
        if self.scopes is not None:
            require_interaction(self.scopes, res_type, interaction, conditional=conditional)

    def require_operation(self, res_type: str | None, name: str, *, affects_state: bool) -> None:
        if self.scopes is not None:
            require_operation(self.scopes, res_type, name, affects_state=affects_state)

    def readable(self, res_type: str) -> bool:
        return self.scopes is None or readable(self.scopes, res_type)


OPEN = Principal(None)


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
