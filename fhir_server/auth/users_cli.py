"""``fhir-server users add|list|disable|set-role|reset-password``: the people who sign in to the
web console (admins do the same in the console's users page, with the same functions)."""

from __future__ import annotations

import typer

from .cli import DatabaseOption, _write
from .users import ROLES, UserError, add_user, disable_user, list_users, reset_password, set_role

users_app = typer.Typer(help="Manage the web console's users (docs/console.md).", no_args_is_help=True)


@users_app.command("add")
def add(
    username: str = typer.Argument(..., help="Sign-in name (a-z, 0-9, '.', '_', '-')"),
    role: str = typer.Option(..., "--role", help=f"One of {', '.join(ROLES)}"),
    name: str | None = typer.Option(None, "--name", help="Full name shown in the console"),
    password: str = typer.Option(
        ...,
        "--password",
        prompt=True,
        hide_input=True,
        confirmation_prompt=True,
        envvar="FHIR_CONSOLE_PASSWORD",
        help="Asked for when left out",
    ),
    database_url: str | None = DatabaseOption,
) -> None:
    """Add a console user with a role (viewer, clerk, admin)."""
    try:
        with _write(database_url, "console_users") as conn:
            user = add_user(conn, username, password, role, name)
    except UserError as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"added {user.username} ({user.role})")


@users_app.command("list")
def list_(database_url: str | None = DatabaseOption) -> None:
    """List the console users (never their passwords)."""
    with _write(database_url, "console_users") as conn:
        users = list_users(conn)
    for u in users:
        typer.echo(f"{u.username}\t{u.role}\t{'active' if u.active else 'disabled'}\t{u.display_name}")


@users_app.command("disable")
def disable(username: str = typer.Argument(...), database_url: str | None = DatabaseOption) -> None:
    """Disable a user and end their sessions at once."""
    with _write(database_url, "console_users") as conn:
        found = disable_user(conn, username)
    if not found:
        typer.echo(f"Error: no user '{username}'", err=True)
        raise typer.Exit(1)
    typer.echo(f"disabled {username}")


@users_app.command("set-role")
def set_role_command(
    username: str = typer.Argument(...),
    role: str = typer.Option(..., "--role", help=f"One of {', '.join(ROLES)}"),
    database_url: str | None = DatabaseOption,
) -> None:
    """Give a user another role (from their next request on)."""
    try:
        with _write(database_url, "console_users") as conn:
            found = set_role(conn, username, role)
    except UserError as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(2) from None
    if not found:
        typer.echo(f"Error: no user '{username}'", err=True)
        raise typer.Exit(1)
    typer.echo(f"{username} is now {role}")


@users_app.command("reset-password")
def reset_password_command(
    username: str = typer.Argument(...),
    password: str = typer.Option(
        ...,
        "--password",
        prompt=True,
        hide_input=True,
        confirmation_prompt=True,
        envvar="FHIR_CONSOLE_PASSWORD",
        help="Asked for when left out",
    ),
    database_url: str | None = DatabaseOption,
) -> None:
    """Set a new password (lifts a lock-out and ends the user's sessions)."""
    try:
        with _write(database_url, "console_users") as conn:
            found = reset_password(conn, username, password)
    except UserError as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(2) from None
    if not found:
        typer.echo(f"Error: no user '{username}'", err=True)
        raise typer.Exit(1)
    typer.echo(f"new password set for {username}; their sessions ended")
