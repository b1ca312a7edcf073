"""Whose eyes a subscription sees through: the principal of the client that wrote it."""

from __future__ import annotations

from sqlalchemy.engine import Connection

from fhir_server.auth.clients import get_client
from fhir_server.service.access import OPEN, Principal


def subscriber(conn: Connection, client_id: str | None, *, token_mode: bool) -> Principal | None:
    """The principal notifications are limited by: the registered client's current scopes (a
    revoked or unknown client: None, nothing may leave). Open access: the open principal."""
    if client_id is None:
        return None if token_mode else OPEN
    client = get_client(conn, client_id)
    if client is None or not client.active:
        return None
    return Principal(client.scope_set, client.client_id, client.organization_id)
