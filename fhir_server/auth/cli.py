"""``fhir-server clients add|list|revoke``: manage the OAuth clients stored in the database."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import typer
from sqlalchemy.engine import Connection

from fhir_server.config import Settings

from .clients import ClientError, add_client, list_clients, load_jwks_text, revoke_client

clients_app = typer.Typer(help="Manage the OAuth clients allowed to get access tokens.", no_args_is_help=True)

DatabaseOption = typer.Option(None, "--database-url", help="SQLAlchemy URL (env FHIR_DATABASE_URL); default: ./fhir.sqlite3")

T = TypeVar("T")


@contextmanager
def _write(database_url: str | None, table: str = "auth_clients") -> Iterator[Connection]:
    import sqlalchemy as sa

    from fhir_server.storage.db import Database

    url = Settings.from_env(database_url=database_url).effective_database_url
    db = Database.from_url(url, pool_size=1)
    try:
        if table not in sa.inspect(db.engine).get_table_names():
            typer.echo(f"The database has no {table} table yet: run 'fhir-server migrate' first.", err=True)
            raise typer.Exit(1)
        with db.write() as conn:
            yield conn
    finally:
        db.dispose()


def _run(database_url: str | None, action: Callable[[Connection], T]) -> T:
    try:
        with _write(database_url) as conn:
            return action(conn)
    except ClientError as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(2) from None


@clients_app.command("add")
def add(
    name: str = typer.Option(..., "--name", help="Who the client is (shown in lists and audit records)"),
    scope: list[str] = typer.Option(..., "--scope", help="SMART system/ scope(s), space-separated or repeated, e.g. 'system/*.rs'"),
    jwks_file: Path | None = typer.Option(
        None,
        "--jwks-file",
        exists=True,
        dir_okay=False,
        readable=True,
        help="Public keys for private_key_jwt: a JWKS, a JWK or PEM public key(s)",
    ),
    organization: str | None = typer.Option(None, "--organization", help="Organization id the client acts for (SATUSEHAT-style binding)"),
    secret: bool | None = typer.Option(
        None, "--secret/--no-secret", help="Issue a client secret (default: yes unless --jwks-file is given)"
    ),
    client_id: str | None = typer.Option(None, "--client-id", help="Use this client id instead of a random one"),
    as_json: bool = typer.Option(False, "--json", help="Print {client_id, client_secret} as JSON"),
    database_url: str | None = DatabaseOption,
) -> None:
    """Register a client and print its id and secret (the secret is shown only this once)."""
    jwks = None
    if jwks_file is not None:
        try:
            jwks = load_jwks_text(jwks_file.read_text(encoding="utf-8"))
        except ClientError as exc:
            typer.echo(f"Error: {jwks_file}: {exc}", err=True)
            raise typer.Exit(2) from None
    new_id, new_secret = _run(
        database_url,
        lambda conn: add_client(
            conn,
            name=name,
            scopes=scope,
            jwks=jwks,
            organization_id=organization,
            with_secret=secret,
            client_id=client_id,
        ),
    )
    if as_json:
        typer.echo(json.dumps({"client_id": new_id, "client_secret": new_secret}))
        return
    typer.echo(f"client_id:     {new_id}")
    if new_secret is not None:
        typer.echo(f"client_secret: {new_secret}")
        typer.echo("Store the secret now: only its hash is kept and it cannot be shown again.")
    else:
        typer.echo("No secret: the client authenticates with private_key_jwt.")


@clients_app.command("list")
def list_(database_url: str | None = DatabaseOption) -> None:
    """List the registered clients (never their secrets)."""
    from rich.console import Console
    from rich.table import Table

    from fhir_server.timeutil import to_instant

    clients = _run(database_url, list_clients)
    table = Table(title="OAuth clients")
    for column in ("client_id", "name", "scopes", "authentication", "organization", "status", "created"):
        table.add_column(column, overflow="fold")
    for c in clients:
        auth = ", ".join(filter(None, ["secret" if c.has_secret else "", "private_key_jwt" if c.jwks else ""]))
        status = "active" if c.active else f"revoked {to_instant(c.revoked_us)[:19]}" if c.revoked_us else "revoked"
        table.add_row(c.client_id, c.name, " ".join(c.scopes), auth, c.organization_id or "", status, to_instant(c.created_us)[:19])
    Console(width=200).print(table)


@clients_app.command("revoke")
def revoke(
    client_id: str = typer.Argument(..., help="The client to deactivate"),
    database_url: str | None = DatabaseOption,
) -> None:
    """Deactivate a client: it gets no new tokens (tokens already issued run out within their lifetime)."""
    if not _run(database_url, lambda conn: revoke_client(conn, client_id)):
        typer.echo(f"Error: no client '{client_id}'", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {client_id}")
