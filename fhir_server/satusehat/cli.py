"""``fhir-server satusehat status|failed|retry|sync`` and ``facilities add|list|remove``
(docs/satusehat.md). Client secrets are asked for without echo and never printed back."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import typer

from fhir_server.config import Settings
from fhir_server.satusehat import store
from fhir_server.satusehat.facility import resolve_base
from fhir_server.satusehat.operations import retry_in
from fhir_server.satusehat.setup import new_worker
from fhir_server.service.access import OPEN
from fhir_server.service.pipeline import Interaction
from fhir_server.state import build_state
from fhir_server.storage.db import Database
from fhir_server.timeutil import now_us, to_instant

satusehat_app = typer.Typer(help="SATUSEHAT sync: state, failures, retry, sync now, facilities (docs/satusehat.md).", no_args_is_help=True)
facilities_app = typer.Typer(help="Facilities (several Puskesmas on one server), each bound to a local Organization.", no_args_is_help=True)
satusehat_app.add_typer(facilities_app, name="facilities")
DatabaseOption = typer.Option(None, "--database-url", help="SQLAlchemy URL (env FHIR_DATABASE_URL); default: ./fhir.sqlite3")


def _settings(database_url: str | None) -> Settings:
    return Settings.from_env(database_url=database_url)


def _db(database_url: str | None) -> Database:
    return Database.from_url(_settings(database_url).effective_database_url, pool_size=1)


@satusehat_app.command("status")
def status_command(database_url: str | None = DatabaseOption) -> None:
    """Counts per facility and status, and the oldest pending resource."""
    db = _db(database_url)
    try:
        with db.read() as conn:
            counts = store.counts(conn)
            oldest = store.oldest_pending(conn)
        if not counts:
            typer.echo("nothing seen by the SATUSEHAT sync yet")
        for facility in sorted({f for f, _ in counts}):
            typer.echo(f"{facility}\t" + "\t".join(f"{s}={counts.get((facility, s), 0)}" for s in store.STATUSES))
        if oldest is not None:
            typer.echo(f"oldest pending: {oldest.ref} since {to_instant(oldest.queued_us)}")
    finally:
        db.dispose()


@satusehat_app.command("failed")
def failed_command(
    held: bool = typer.Option(False, "--held", help="list held resources instead of failed ones"),
    limit: int = typer.Option(100, help="at most this many"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object per line, with SATUSEHAT's OperationOutcome"),
    database_url: str | None = DatabaseOption,
) -> None:
    """Failed (or held) resources with the reason, SATUSEHAT's rule number and the last attempt."""
    db = _db(database_url)
    try:
        with db.read() as conn:
            items = store.by_status(conn, "held" if held else "failed", limit)
        for i in items:
            if as_json:
                outcome: Any = json.loads(i.outcome) if i.outcome and i.outcome.startswith("{") else i.outcome
                last = to_instant(i.last_attempt_us) if i.last_attempt_us else None
                row = {
                    "resource": i.ref,
                    "facility": i.facility,
                    "rule": i.rule,
                    "error": i.last_error,
                    "last_attempt": last,
                    "outcome": outcome,
                }
                typer.echo(json.dumps(row))
            else:
                typer.echo(f"{i.ref}\t{i.facility}\trule={i.rule or '-'}\t{i.last_error or ''}")
        if not items and not as_json:
            typer.echo(f"no {'held' if held else 'failed'} resources")
    finally:
        db.dispose()


@satusehat_app.command("retry")
def retry_command(
    refs: list[str] = typer.Argument(None, help="Type/id of each resource to retry (none: every failed one; --held: every held one)"),
    held: bool = typer.Option(False, "--held", help="retry every held resource (after fixing the data or the NIK look-up)"),
    database_url: str | None = DatabaseOption,
) -> None:
    """Send resources again as soon as a worker can (through the server's write path)."""
    state = build_state(_settings(database_url), blocking_writes=True)
    try:
        with state.db.read() as conn:
            if refs:
                items = [store.get(conn, *r.split("/", 1)) for r in refs if "/" in r]
            else:
                items = list(store.by_status(conn, "held" if held else "failed", 1_000_000))
        found = [i for i in items if i is not None]
        write = state.pipeline.writer(Interaction("update", state.settings.base_url or "", OPEN, "Encounter"))

        def queue_again(conn: Any) -> None:
            for item in found:
                retry_in(conn, item)

        asyncio.run(write(queue_again, alone=True))
        typer.echo(f"{len(found)} resource(s) queued again")
        if refs and len(found) != len(refs):
            typer.echo("some references are not known to the sync (Type/id of a synced type?)", err=True)
            raise typer.Exit(1)
    finally:
        state.db.dispose()


@satusehat_app.command("sync")
def sync_command(
    timeout: float = typer.Option(0, help="stop after this many seconds (0: when nothing is pending)"),
    database_url: str | None = DatabaseOption,
) -> None:
    """Run the sync in this process until the backlog is drained, with a progress bar."""
    state = build_state(_settings(database_url), blocking_writes=True)
    worker = new_worker(state)
    if worker is None:
        typer.echo(
            "SATUSEHAT sync is off: set FHIR_SATUSEHAT_URL, _CLIENT_ID, _CLIENT_SECRET, _ORGANIZATION_ID or add a facility", err=True
        )
        state.db.dispose()
        raise typer.Exit(1)

    def pending() -> int:
        with state.db.read() as conn:
            counts = store.counts(conn)
        return sum(n for (_, s), n in counts.items() if s == "pending")

    async def run() -> int:
        started = time.monotonic()
        await worker.ingest()
        while await worker.ingest():
            pass
        total = max(pending(), 1)
        with typer.progressbar(length=total, label="sending to SATUSEHAT") as bar:
            done = 0
            while True:
                await worker.run_once()
                await asyncio.sleep(0.05)
                left = pending()
                now_done = max(0, total - left)
                bar.update(now_done - done)
                done = now_done
                if left == 0 and not worker.busy:
                    break
                if timeout and time.monotonic() - started > timeout:
                    break
        await worker.wait_idle()
        await worker.stop()
        return pending()

    try:
        left = asyncio.run(run())
    finally:
        state.db.dispose()
    typer.echo(f"pending: {left}; see `fhir-server satusehat status` and `failed`")


@facilities_app.command("add")
def facilities_add(
    name: str = typer.Option(..., help="a short name, e.g. puskesmas-ciracas"),
    organization: str = typer.Option(..., "--organization", help="the local Organization id whose resources go to this facility"),
    organization_id: str = typer.Option(..., "--organization-id", help="the facility's SATUSEHAT Organization id"),
    url: str = typer.Option("sandbox", help="sandbox, production or an explicit base URL"),
    client_id: str = typer.Option(..., "--client-id"),
    client_secret: str = typer.Option(..., "--client-secret", prompt=True, hide_input=True, help="asked for when not given"),
    database_url: str | None = DatabaseOption,
) -> None:
    """Add a facility (the secret is stored, never printed)."""
    try:
        base = resolve_base(url)
    except ValueError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    db = _db(database_url)
    try:
        with db.write() as conn:
            if any(f["name"] == name or f["local_org"] == organization for f in store.facilities(conn)):
                typer.echo(f"a facility named {name} or bound to Organization/{organization} exists already", err=True)
                raise typer.Exit(1)
            store.add_facility(
                conn,
                name=name,
                local_org=organization,
                organization_id=organization_id,
                url=base,
                client_id=client_id,
                client_secret=client_secret,
                created_us=now_us(),
            )
        typer.echo(f"facility {name} added (Organization/{organization} -> SATUSEHAT {organization_id}); restart the server to use it")
    finally:
        db.dispose()


@facilities_app.command("list")
def facilities_list(database_url: str | None = DatabaseOption) -> None:
    """The facilities (never their secrets)."""
    db = _db(database_url)
    try:
        with db.read() as conn:
            rows = store.facilities(conn)
        for f in rows:
            typer.echo(f"{f['name']}\tOrganization/{f['local_org']}\t{f['organization_id']}\t{f['url']}\tclient={f['client_id']}")
        if not rows:
            typer.echo("no facilities added (the environment's FHIR_SATUSEHAT_* facility is not listed here)")
    finally:
        db.dispose()


@facilities_app.command("remove")
def facilities_remove(name: str, database_url: str | None = DatabaseOption) -> None:
    db = _db(database_url)
    try:
        with db.write() as conn:
            gone = store.remove_facility(conn, name)
        if not gone:
            typer.echo(f"no facility {name}", err=True)
            raise typer.Exit(1)
        typer.echo(f"facility {name} removed; restart the server")
    finally:
        db.dispose()
