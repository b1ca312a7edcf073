"""``fhir-server subscriptions list|status|replay``: what operators need to look after delivery."""

from __future__ import annotations

import json

import typer

from fhir_server.config import Settings
from fhir_server.storage import claims
from fhir_server.storage.db import Database
from fhir_server.subscriptions import store
from fhir_server.timeutil import now_us, to_instant

subscriptions_app = typer.Typer(help="Subscriptions: state, delivery log, replay (docs/subscriptions.md).", no_args_is_help=True)
DatabaseOption = typer.Option(None, "--database-url", help="SQLAlchemy URL (env FHIR_DATABASE_URL); default: ./fhir.sqlite3")


def _db(database_url: str | None) -> Database:
    return Database.from_url(Settings.from_env(database_url=database_url).effective_database_url, pool_size=1)


@subscriptions_app.command("list")
def list_command(database_url: str | None = DatabaseOption) -> None:
    """One line per subscription: id, status, channel, what it watches, events generated/delivered, failures."""
    db = _db(database_url)
    try:
        with db.read() as conn:
            states = store.all_states(conn)
            parts = {s.sub_id: claims.partition_state(conn, store.queue_of(s.spec), s.sub_id) or {} for s in states}
        for s in states:
            what = s.spec.topic or f"{s.spec.res_type}?{'&'.join(f'{k}={v}' for k, v in s.spec.params)}"
            failures = parts[s.sub_id].get("failures", 0)
            typer.echo(f"{s.sub_id}\t{s.status}\t{s.spec.channel}\t{what}\tevents={s.events}\tdelivered={s.delivered}\tfailures={failures}")
        if not states:
            typer.echo("no subscriptions")
    finally:
        db.dispose()


@subscriptions_app.command("status")
def status_command(
    sub_id: str,
    attempts: int = typer.Option(10, help="how many recent delivery attempts to show"),
    database_url: str | None = DatabaseOption,
) -> None:
    """One subscription: its state, back-off, and its latest delivery attempts (never its secrets)."""
    db = _db(database_url)
    try:
        with db.read() as conn:
            s = store.get(conn, sub_id)
            if s is None:
                typer.echo(f"no subscription {sub_id}", err=True)
                raise typer.Exit(1)
            part = claims.partition_state(conn, store.queue_of(s.spec), sub_id) or {}
            log = store.attempts(conn, sub_id, attempts)
        info = {
            "id": sub_id,
            "status": s.status,
            "client": s.client_id,
            "kind": s.spec.kind,
            "channel": s.spec.channel,
            "endpoint": s.spec.endpoint,
            "content": s.spec.content,
            "watches": s.spec.topic or s.spec.res_type,
            "filters": [f"{k}={v}" for k, v in s.spec.params],
            "events": s.events,
            "delivered": s.delivered,
            "failures": part.get("failures", 0),
            "retry_at": to_instant(part["retry_at_us"]) if part.get("retry_at_us") else None,
            "last_error": part.get("last_error"),
            "headers": s.spec.header_names,
            "signed": s.secrets.secret is not None,
        }
        typer.echo(json.dumps(info, indent=2))
        for a in log:
            typer.echo(
                f"{to_instant(a['started_us'])}  {a['kind']:<18} events {a['first_event'] or '-'}..{a['last_event'] or '-'}  "
                f"attempt {a['attempt']}  {a['outcome']:<7} {a['http_status'] or '-'}  {a['error'] or ''}"
            )
    finally:
        db.dispose()


@subscriptions_app.command("replay")
def replay_command(
    sub_id: str,
    from_event: int = typer.Option(..., "--from", min=1, help="deliver again from this event number on"),
    database_url: str | None = DatabaseOption,
) -> None:
    """Deliver a subscription's events again from ``--from`` on (same notification ids: receivers de-duplicate)."""
    db = _db(database_url)
    try:
        with db.write() as conn:
            s = store.get(conn, sub_id)
            if s is None:
                typer.echo(f"no subscription {sub_id}", err=True)
                raise typer.Exit(1)
            if s.status != "active":
                typer.echo(f"subscription {sub_id} is {s.status}: the client re-activates it first (status requested)", err=True)
                raise typer.Exit(1)
            store.replay(conn, sub_id, from_event, now_us())
        typer.echo(f"subscription {sub_id}: events {from_event}..{s.events} will be delivered again")
    finally:
        db.dispose()
