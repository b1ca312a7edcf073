"""``fhir-server mpi scan``: score every stored Patient against its candidates (docs/mpi.md)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import IO

import typer

mpi_app = typer.Typer(help="Master patient index: the duplicate scan.", no_args_is_help=True)


@mpi_app.command()
def scan(
    output: Path | None = typer.Option(None, "--output", "-o", help="Also write the pairs found to this file"),
    fmt: str = typer.Option("json", "--format", help="json (one JSON object per line) or csv"),
    restart: bool = typer.Option(False, "--restart", help="Start from the first Patient instead of the checkpoint"),
    min_grade: str = typer.Option("possible", "--min-grade", help="Lowest grade to record: certain, probable or possible"),
    database_url: str | None = typer.Option(None, "--database-url", help="SQLAlchemy URL (env FHIR_DATABASE_URL)"),
) -> None:
    """Find likely duplicate Patients; the pairs are stored for review (GET Patient/$duplicates).

    Resumable: an interrupted scan continues from its checkpoint (the output file is appended to).
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from fhir_server.config import Settings
    from fhir_server.mpi.scoring import GRADES
    from fhir_server.service.mpi_scan import DuplicateScan, FoundPair
    from fhir_server.storage.db import Database

    if fmt not in ("json", "csv"):
        typer.echo("--format must be json or csv", err=True)
        raise typer.Exit(2)
    if min_grade not in GRADES:
        typer.echo(f"--min-grade must be one of {', '.join(GRADES)}", err=True)
        raise typer.Exit(2)
    settings = Settings.from_env(database_url=database_url)
    db = Database.from_url(settings.effective_database_url, pool_size=2)
    handle: IO[str] | None = None
    try:
        writer = None
        if output is not None:
            fresh = restart or not output.exists()
            handle = output.open("w" if restart else "a", encoding="utf-8", newline="")
            if fmt == "csv":
                writer = csv.writer(handle)
                if fresh:
                    writer.writerow(["patient_a", "patient_b", "grade", "score", "reasons"])

        def sink(pair: FoundPair) -> None:
            if handle is None:
                return
            if writer is not None:
                writer.writerow([pair.a_id, pair.b_id, pair.grade, pair.score, "; ".join(pair.reasons)])
            else:
                record = {"patient_a": pair.a_id, "patient_b": pair.b_id, "grade": pair.grade, "score": pair.score, "reasons": pair.reasons}
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")

        with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()) as bar:
            task = bar.add_task("mpi scan", total=None)
            summary = DuplicateScan(db, min_grade=min_grade).run(
                restart=restart, sink=sink, progress=lambda n, total: bar.update(task, completed=n, total=total)
            )
    finally:
        if handle is not None:
            handle.close()
        db.dispose()
    resumed = f" (resumed after {summary.resumed_from})" if summary.resumed_from else ""
    typer.echo(
        f"scanned {summary.scanned} of {summary.total} Patients{resumed}: {summary.compared} pairs compared, {summary.pairs} recorded"
    )
    if summary.limited_keys:
        typer.echo(f"warning: {len(summary.limited_keys)} blocking keys were shared by more than the candidate limit and skipped", err=True)
