"""The ``fhir-server`` command line."""

from __future__ import annotations

import os
from typing import Any

import typer

from fhir_server.auth.cli import clients_app
from fhir_server.auth.users_cli import users_app
from fhir_server.config import Settings, StartupError
from fhir_server.mpi_cli import mpi_app
from fhir_server.satusehat.cli import satusehat_app
from fhir_server.subscriptions.cli import subscriptions_app
from fhir_server.terminology_cli import terminology_app

app = typer.Typer(help="FHIR R4 interoperability server for Indonesian healthcare.", no_args_is_help=True)
app.add_typer(terminology_app, name="terminology")
app.add_typer(clients_app, name="clients")
app.add_typer(subscriptions_app, name="subscriptions")
app.add_typer(mpi_app, name="mpi")
app.add_typer(users_app, name="users")  # the web console's users (docs/console.md)
app.add_typer(satusehat_app, name="satusehat")

DatabaseOption = typer.Option(None, "--database-url", help="SQLAlchemy URL (env FHIR_DATABASE_URL); default: ./fhir.sqlite3")
CreateDatabaseOption = typer.Option(
    False, "--create-database", help="create a missing PostgreSQL database or SQLite folder (env FHIR_CREATE_DATABASE)"
)


def main() -> None:
    """The ``fhir-server`` command. A start-up problem (a setting, the database, the port) is one
    line on stderr saying what to do, and exit status 1: never a traceback."""
    from sqlalchemy import exc as sa_exc

    try:
        app()
    except StartupError as exc:
        _fail(str(exc))
    except sa_exc.DBAPIError as exc:  # a database problem outside the start-up checks
        first = " ".join(str(exc.orig or exc).split("\n(Background on this error", 1)[0].split())
        _fail(f"database error: {first}")


def _fail(line: str) -> None:
    typer.echo(f"fhir-server: {line}", err=True)
    raise SystemExit(1)


def _settings(database_url: str | None, **overrides: Any) -> Settings:
    return Settings.from_env(database_url=database_url, **overrides)


def _database_url(settings: Settings) -> str:
    """The database URL after the start-up checks (``storage.provision``): StartupError with one
    clear line when it cannot be used; a missing database is created with ``create_database``."""
    from fhir_server.storage.provision import prepare_database

    url = settings.effective_database_url
    prepare_database(url, create=settings.create_database)
    return url


def _check_port(host: str, port: int) -> None:
    """StartupError unless ``host:port`` can be listened on: said before migrating, in one line
    (uvicorn would say it after, among its log lines)."""
    import errno
    import socket

    try:
        family, kind, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror:
        raise StartupError(
            f"cannot listen on {host}: the name does not resolve; use an address of this machine (127.0.0.1, 0.0.0.0)"
        ) from None
    with socket.socket(family, kind) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: old TIME_WAIT connections do not count
        try:
            probe.bind(address)
        except OSError as exc:
            where = f"{host}:{port}"
            if exc.errno == errno.EADDRINUSE:
                raise StartupError(
                    f"{where} is taken (address already in use): stop the process listening there or choose another --port"
                ) from None
            if exc.errno == errno.EACCES:
                raise StartupError(
                    f"not allowed to listen on {where} (ports below 1024 need privileges): choose --port 8080 or another above 1023"
                ) from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise StartupError(
                    f"cannot listen on {where}: {host} is not an address of this machine; use 127.0.0.1 or 0.0.0.0"
                ) from None
            raise StartupError(f"cannot listen on {where}: {exc.strerror}") from None


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Address to bind"),
    port: int = typer.Option(8080, min=1, max=65535, help="Port to bind"),
    workers: int = typer.Option(1, min=1, help="Number of worker processes"),
    database_url: str | None = DatabaseOption,
    migrate: bool = typer.Option(True, "--migrate/--no-migrate", help="Run database migrations before serving"),
    auth: str | None = typer.Option(None, "--auth", help="none or token (env FHIR_AUTH; default none, loopback only)"),
    log_level: str = typer.Option("warning", help="uvicorn log level"),
    create_database: bool = CreateDatabaseOption,
) -> None:
    """Serve the FHIR API at http://HOST:PORT/fhir."""
    import uvicorn

    from fhir_server.api.http_protocol import FhirHttpToolsProtocol

    settings = _settings(database_url, auth=auth, create_database=create_database or None)
    from fhir_server.auth.modes import check_auth_mode, is_loopback

    # FHIR_AUTH=none set on purpose is an explicit choice of open access; only the
    # unset default refuses to expose an open server beyond this machine
    explicit_none = settings.auth == "none" and (auth == "none" or os.environ.get("FHIR_AUTH", "") == "none")
    try:
        check_auth_mode(settings.auth, host, allow_open=settings.auth_allow_open or explicit_none)
    except ValueError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    if settings.auth == "none" and not is_loopback(host):
        typer.echo(f"warning: serving {host} WITHOUT authentication (FHIR_AUTH=none)", err=True)
    os.environ["FHIR_AUTH"] = settings.auth
    _check_port(host, port)
    _database_url(settings)
    if migrate:
        # once, here, before any worker starts: workers migrating at once would race
        _migrate_and_seed(settings)
    os.environ["FHIR_DATABASE_URL"] = settings.effective_database_url
    os.environ["FHIR_MIGRATE_ON_START"] = "false"
    typer.echo(f"FHIR R4 server on http://{host}:{port}/fhir ({_describe(settings.effective_database_url)}, {workers} worker(s))")
    uvicorn.run(
        "fhir_server.app:create_app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers if workers > 1 else None,
        log_level=log_level,
        access_log=False,
        loop="uvloop",
        http=FhirHttpToolsProtocol,  # uvicorn's httptools protocol, answering unparsable requests in FHIR
    )


@app.command()
def migrate(
    database_url: str | None = DatabaseOption,
    downgrade_to: str | None = typer.Option(None, "--downgrade", help="Downgrade to this revision (base = empty)"),
    create_database: bool = CreateDatabaseOption,
) -> None:
    """Bring the database schema up to date (or down to a revision)."""
    from fhir_server.storage import migrate as migrations
    from fhir_server.storage.db import create_engine

    settings = _settings(database_url, create_database=create_database or None)
    _database_url(settings)
    if downgrade_to:
        engine = create_engine(settings.effective_database_url)
        migrations.downgrade(engine, downgrade_to)
        engine.dispose()
    else:
        _migrate_and_seed(settings)
    engine = create_engine(settings.effective_database_url)
    typer.echo(f"database at revision {migrations.current_revision(engine)} ({_describe(settings.effective_database_url)})")
    engine.dispose()


def _migrate_and_seed(settings: Settings) -> None:
    """Schema up to date, then the server's own conformance resources stored."""
    from fhir_server.service.seed import seed_conformance
    from fhir_server.state import build_state
    from fhir_server.storage import migrate as migrations

    state = build_state(settings)
    try:
        migrations.upgrade(state.db.engine)
        seed_conformance(state.resources)
    finally:
        state.db.dispose()


@app.command()
def reindex(
    res_type: str | None = typer.Option(None, "--type", help="Only this resource type"),
    database_url: str | None = DatabaseOption,
) -> None:
    """Rebuild the search index of the stored resources (after an upgrade that changes extraction)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from fhir_server.resource_types import is_resource_type
    from fhir_server.search.reindex import reindex as run_reindex
    from fhir_server.storage.db import Database, create_engine

    if res_type is not None and not is_resource_type(res_type):
        typer.echo(f"'{res_type}' is not an R4 resource type", err=True)
        raise typer.Exit(2)
    engine = create_engine(_database_url(_settings(database_url)))
    try:
        with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()) as bar:
            task = bar.add_task(f"reindex {res_type or 'all types'}", total=None)
            done = run_reindex(engine, res_type, lambda n, total: bar.update(task, completed=n, total=total))
        Database(engine).analyze()
    finally:
        engine.dispose()
    typer.echo(f"reindexed {done} resources")


@app.command("import")
def import_command(
    paths: list[str] = typer.Argument(..., help="NDJSON files, Bundles (JSON), directories, .gz files"),
    database_url: str | None = DatabaseOption,
    batch_size: int = typer.Option(500, help="resources per transaction"),
    workers: int = typer.Option(0, help="processes writing transactions at once (0: one per core, at most 2; 1: this process alone)"),
    create_database: bool = CreateDatabaseOption,
) -> None:
    """Load resources idempotently (PUT by id; ids derived when missing), with a summary."""
    import os
    import time
    from collections.abc import Iterator
    from contextlib import contextmanager
    from pathlib import Path

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
    from rich.table import Table

    from fhir_server.service.importer import Importer
    from fhir_server.service.pipeline import Pipeline
    from fhir_server.state import build_state
    from fhir_server.storage import migrate as migrations

    settings = _settings(database_url, max_bundle_entries=max(batch_size, 1), create_database=create_database or None)
    _database_url(settings)
    state = build_state(settings, blocking_writes=True)

    @contextmanager
    def worker_pipeline() -> Iterator[Pipeline]:  # in a worker process: connections of its own
        own = build_state(settings, blocking_writes=True)
        try:
            yield own.pipeline
        finally:
            own.db.dispose()

    importer = Importer(
        state.pipeline,
        batch_size=batch_size,
        workers=workers if workers > 0 else min(2, os.cpu_count() or 1),
        worker_pipeline=worker_pipeline,
        # the MPI compares a Patient with the Patients stored: theirs are written one after the other
        serial_types=frozenset({"Patient"}) if settings.mpi_flag_duplicates else frozenset(),
    )
    try:
        migrations.upgrade(state.db.engine)
        started = time.monotonic()
        with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()) as bar:
            task = bar.add_task("import", total=None)
            summary = importer.run([Path(p) for p in paths], progress=lambda n: bar.advance(task, n))
        state.db.analyze()  # fresh planner statistics after a bulk load
        seconds = time.monotonic() - started
    finally:
        state.db.dispose()
    table = Table(title=f"import: {summary.files} file(s)")
    for col in ("type", "created", "existing (updated or unchanged)"):
        table.add_column(col)
    for res_type in sorted(set(summary.created) | set(summary.existing)):
        table.add_row(res_type, str(summary.created[res_type]), str(summary.existing[res_type]))
    console = Console()
    console.print(table)
    for line in summary.errors:
        typer.echo(f"error: {line}", err=True)
    for line in summary.warnings:  # stored as sent (the server stores such references), but worth knowing
        typer.echo(f"warning: {line}", err=True)
    unresolved = f", {len(summary.warnings)} unresolved references" if summary.warnings else ""
    rate = f" in {seconds:.2f}s ({summary.total / seconds:,.0f} resources/s)" if seconds > 0 else ""
    typer.echo(
        f"{sum(summary.created.values())} created, {sum(summary.existing.values())} existing, "
        f"{len(summary.errors)} errors{unresolved}{rate}"
    )
    if summary.errors:
        raise typer.Exit(1)


@app.command("export")
def export_command(
    out_dir: str = typer.Argument(..., help="directory for the <Type>.ndjson files"),
    res_type: list[str] | None = typer.Option(None, "--type", help="only these types (repeatable)"),
    since: str | None = typer.Option(None, "--since", help="only resources updated at or after this date/dateTime"),
    database_url: str | None = DatabaseOption,
) -> None:
    """Write the current resources as NDJSON (the stored bytes, one per line)."""
    from pathlib import Path

    from fhir_server.service.importer import export_ndjson
    from fhir_server.storage.db import Database
    from fhir_server.timeutil import datetime_range

    since_us = None
    if since:
        try:
            since_us = datetime_range(since)[0]
        except ValueError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(2) from None
    from fhir_server.resource_types import is_resource_type

    unknown = [t for t in res_type or () if not is_resource_type(t)]
    if unknown:
        typer.echo(f"'{unknown[0]}' is not an R4 resource type", err=True)
        raise typer.Exit(2)
    db = Database.from_url(_database_url(_settings(database_url)))
    try:
        counts = export_ndjson(db, Path(out_dir), list(res_type) if res_type else None, since_us)
    except OSError as exc:  # the folder cannot be made or written: said in one line
        typer.echo(f"fhir-server: cannot write the export to {out_dir}: {exc.strerror or exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        db.dispose()
    for name, n in sorted(counts.items()):
        typer.echo(f"{name}.ndjson\t{n}")
    typer.echo(f"{sum(counts.values())} resources exported to {out_dir}")


audit_app = typer.Typer(help="The audit trail (AuditEvents of every request).", no_args_is_help=True)
app.add_typer(audit_app, name="audit")


@audit_app.command("purge")
def audit_purge(
    before: str = typer.Option(..., "--before", help="delete events recorded before this date/dateTime"),
    database_url: str | None = DatabaseOption,
) -> None:
    """Delete audit events older than a date (retention)."""
    from fhir_server.audit.search import purge
    from fhir_server.storage.db import Database
    from fhir_server.timeutil import datetime_range

    try:
        before_us = datetime_range(before)[0]
    except ValueError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    db = Database.from_url(_database_url(_settings(database_url)))
    try:
        with db.write() as conn:
            removed = purge(conn, before_us)
    finally:
        db.dispose()
    typer.echo(f"{removed} audit events recorded before {before} deleted")


changes_app = typer.Typer(help="The change log (every committed create, update and delete).", no_args_is_help=True)
app.add_typer(changes_app, name="changes")


@changes_app.command("purge")
def changes_purge(
    days: int | None = typer.Option(None, "--days", help="keep this many days (default FHIR_CHANGE_LOG_RETENTION_DAYS)"),
    database_url: str | None = DatabaseOption,
) -> None:
    """Delete change-log rows older than the retention period, and what subscriptions derived
    from them as old (events, delivery attempts; expired websocket tokens). Changes a consumer
    (subscriptions, SATUSEHAT sync) has not read yet are kept, however old."""
    from fhir_server.storage import changelog, claims
    from fhir_server.storage.db import Database
    from fhir_server.subscriptions import store as subscription_store
    from fhir_server.timeutil import now_us

    settings = _settings(database_url)
    keep = settings.change_log_retention_days if days is None else days
    if keep < 0:
        typer.echo("--days must be 0 or more", err=True)
        raise typer.Exit(2)
    before_us = now_us() - keep * 86_400_000_000
    db = Database.from_url(_database_url(settings))
    try:
        with db.write() as conn:
            slowest = claims.slowest_cursor(conn)
            removed = changelog.purge(conn, before_us, up_to_seq=slowest[1] if slowest else None)
            held = changelog.count_before(conn, before_us) if slowest else 0
            events, attempts, tokens = subscription_store.purge(conn, before_us)
    finally:
        db.dispose()
    typer.echo(f"{removed} change-log rows older than {keep} days deleted")
    if slowest and held:
        typer.echo(f"{held} older change-log rows kept: consumer {slowest[0]!r} has not read them yet")
    typer.echo(
        f"{events} subscription events and {attempts} delivery attempts older than {keep} days, {tokens} expired websocket tokens deleted"
    )


MAP_KINDS = ("dukcapil", "bpjs-peserta", "sep", "pcare-pendaftaran", "pcare-kunjungan")


@app.command("map")
def map_command(
    kind: str = typer.Argument(..., help="dukcapil | bpjs-peserta | sep | pcare-pendaftaran | pcare-kunjungan"),
    file: str = typer.Argument(..., help="JSON file, or - for standard input"),
    reverse: bool = typer.Option(False, "--reverse", help="FHIR in (resource, list or Bundle), native JSON out"),
    sep_view: str = typer.Option("request", "--sep-view", help="with --reverse sep: request (SEP 2.0 insert) or response"),
) -> None:
    """Translate a Dukcapil/BPJS payload to FHIR (or back with --reverse), offline."""
    import sys
    from pathlib import Path

    from fhir_server import jsonio
    from fhir_server.errors import FhirError, operation_outcome
    from mappings.api import from_fhir, to_fhir

    if kind not in MAP_KINDS:
        typer.echo(f"unknown format '{kind}'; use one of {', '.join(MAP_KINDS)}", err=True)
        raise typer.Exit(2)
    try:
        raw = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
    except OSError as exc:
        typer.echo(f"cannot read {file}: {exc.strerror}", err=True)
        raise typer.Exit(2) from None
    try:
        payload = jsonio.loads_client(raw)
        if reverse:
            output = from_fhir("sep-response" if kind == "sep" and sep_view == "response" else kind, payload)
        else:
            result = to_fhir(kind, payload)
            if len(result.entries) == 1 and not result.warnings:
                output = result.entries[0].resource
            else:
                output = {"resourceType": "Bundle", "type": "transaction"}
                if result.entries:  # FHIR JSON has no empty arrays
                    output["entry"] = result.transaction_entries()
            if result.warnings:
                typer.echo(jsonio.dumps(operation_outcome(result.warnings), pretty=True).decode(), err=True)
    except jsonio.JsonError as exc:
        typer.echo(jsonio.dumps(operation_outcome([FhirError.of(400, "structure", str(exc)).issues[0]]), pretty=True).decode(), err=True)
        raise typer.Exit(1) from None
    except FhirError as exc:
        typer.echo(jsonio.dumps(operation_outcome(exc.issues), pretty=True).decode(), err=True)
        raise typer.Exit(1) from None
    typer.echo(jsonio.dumps(output, pretty=True).decode())


def _describe(url: str) -> str:
    from sqlalchemy.engine import make_url

    u = make_url(url)
    return f"SQLite {u.database}" if u.get_backend_name() == "sqlite" else f"{u.get_backend_name()} {u.host}/{u.database}"


if __name__ == "__main__":  # pragma: no cover
    main()
