"""Who is acting and what they may do, without HTTP: the principal every interaction carries.

With ``FHIR_AUTH=none`` every request is the open principal (everything allowed).
With ``token`` the transport verifies the bearer token once and builds a
:class:`Principal` from its claims; the pipeline (service/pipeline.py) asks it
about every interaction, every resource an operation writes and every resource
that leaves the server.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from fhir_server.audit.events import ANONYMOUS
from fhir_server.auth.actions import operation_actions
from fhir_server.auth.guard import REALM, readable, require, require_interaction, require_operation
from fhir_server.auth.scopes import ScopeSet
from fhir_server.auth.tokens import www_authenticate
from fhir_server.errors import FhirError, error


@dataclass(frozen=True)
class Principal:
    #: None: open access (FHIR_AUTH=none)
    scopes: ScopeSet | None
    client_id: str = ANONYMOUS
    organization_id: str | None = None

    def require(self, res_type: str | None, interaction: str, *, conditional: bool = False) -> None:
        """403 unless the RESTful ``interaction`` is allowed on ``res_type`` (None: every type)."""
        if self.scopes is not None:
            require_interaction(self.scopes, res_type, interaction, conditional=conditional)

    def require_search_system(self, params: Iterable[tuple[str, str]]) -> None:
        """A system search: search on each type of ``_type``, else on every type."""
        types = [t.strip() for k, v in params if k == "_type" for t in v.split(",") if t.strip()]
        for res_type in types:
            self.require(res_type, "search-type")
        if not types:
            self.require(None, "search-system")

    def require_operation(self, res_type: str | None, name: str, *, affects_state: bool) -> None:
        if self.scopes is not None:
            require_operation(self.scopes, res_type, name, affects_state=affects_state)

    def require_feature(self, scope: str, what: str) -> None:
        """403 unless the token holds the feature scope ``scope`` (auth.scopes.FEATURE_SCOPES)."""
        if self.scopes is not None and not self.scopes.has_feature(scope):
            raise FhirError(
                403,
                [error("forbidden", f"{what} needs the scope {scope}")],
                {"WWW-Authenticate": www_authenticate(REALM, "insufficient_scope")},
            )

    def require_reads(self, res_types: Iterable[str]) -> None:
        """403 unless every type may be read (a view that renders resources of those types)."""
        if self.scopes is not None:
            for res_type in sorted(set(res_types)):
                require(self.scopes, res_type, ("read",))

    def may_operate(self, res_type: str, name: str) -> bool:
        """Whether operation ``$name`` (one that changes nothing) is allowed on ``res_type``."""
        if self.scopes is None:
            return True
        return all(self.scopes.allows(res_type, action) for action in operation_actions(name, affects_state=False))

    def readable(self, res_type: str) -> bool:
        """Whether resources of ``res_type`` may leave the server (includes, views, exports)."""
        return self.scopes is None or readable(self.scopes, res_type)

    def searchable(self, res_type: str) -> bool:
        """Whether resources of ``res_type`` may be used to select others (chains, ``_has``)."""
        return self.scopes is None or self.scopes.allows(res_type, "search")

    @property
    def restricted(self) -> bool:
        return self.scopes is not None

    @property
    def stored_client_id(self) -> str | None:
        """The client as the change log stores it (None: anonymous)."""
        return None if self.client_id == ANONYMOUS else self.client_id


OPEN = Principal(None)
