"""The checks the HTTP layer runs in ``token`` mode, as :class:`FhirError` (401 / 403).

Both become OperationOutcomes through the server's one error path; the
``WWW-Authenticate`` header travels in ``FhirError.headers``.
"""

from __future__ import annotations

from collections.abc import Iterable

from fhir_server.errors import FhirError, error

from .actions import interaction_actions, operation_actions
from .scopes import ScopeSet
from .tokens import Claims, InvalidToken, TokenVerifier, bearer_token, www_authenticate

REALM = "fhir"


def authenticate(authorization: str | None, verifier: TokenVerifier) -> Claims:
    """The claims of the request's bearer token; 401 without a valid one."""
    try:
        token = bearer_token(authorization)
        if token is None:
            raise FhirError(
                401,
                [error("login", "An access token is required: send 'Authorization: Bearer <token>'")],
                {"WWW-Authenticate": www_authenticate(REALM)},
            )
        return verifier.verify(token)
    except InvalidToken as exc:
        raise FhirError(
            401,
            [error("login", f"Invalid access token: {exc.description}")],
            {"WWW-Authenticate": www_authenticate(REALM, "invalid_token", exc.description)},
        ) from None


def require(scopes: ScopeSet, res_type: str | None, actions: Iterable[str]) -> None:
    """403 unless ``scopes`` allow every action on ``res_type`` (None: on every type)."""
    for action in sorted(actions):
        ok = scopes.allows_all_types(action) if res_type is None else scopes.allows(res_type, action)
        if not ok:
            where = "every resource type" if res_type is None else res_type
            raise FhirError(
                403,
                [error("forbidden", f"The access token's scopes do not allow {action} on {where}")],
                {"WWW-Authenticate": www_authenticate(REALM, "insufficient_scope")},
            )


def require_interaction(scopes: ScopeSet, res_type: str | None, interaction: str, *, conditional: bool = False) -> None:
    """403 unless a RESTful interaction (``read``, ``search-type``, ...) is allowed."""
    require(scopes, res_type, interaction_actions(interaction, conditional=conditional))


def require_operation(scopes: ScopeSet, res_type: str | None, name: str, *, affects_state: bool) -> None:
    """403 unless operation ``$name`` is allowed on ``res_type`` (None: a system-level call)."""
    require(scopes, res_type, operation_actions(name, affects_state=affects_state))


def readable(scopes: ScopeSet, res_type: str) -> bool:
    """Whether resources of ``res_type`` may appear in a Bundle as included / ``$everything`` output."""
    return scopes.allows(res_type, "read")
