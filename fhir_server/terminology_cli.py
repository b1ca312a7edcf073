"""``fhir-server terminology lookup|expand|translate``: quick checks against the packaged terminology."""

from __future__ import annotations

import typer

from fhir_server import jsonio
from fhir_server.errors import FhirError, operation_outcome

terminology_app = typer.Typer(help="Look up, expand and translate codes offline (packaged code systems).", no_args_is_help=True)
WILAYAH = "https://fhir-server.id/CodeSystem/kemendagri-wilayah"


def _run(call) -> None:  # type: ignore[no-untyped-def]
    from terminology.engine import default_engine

    try:
        result = call(default_engine())
    except FhirError as exc:
        typer.echo(jsonio.dumps(operation_outcome(exc.issues), pretty=True).decode(), err=True)
        raise typer.Exit(1) from None
    typer.echo(jsonio.dumps(result, pretty=True).decode())


@terminology_app.command()
def lookup(
    code: str = typer.Argument(..., help="the code, e.g. 3204152003"),
    system: str = typer.Option(WILAYAH, "--system", help="code system URL (default: Kemendagri regions)"),
) -> None:
    """CodeSystem/$lookup: display, designations and properties (parent, level)."""
    _run(lambda engine: engine.lookup(system, code))


@terminology_app.command()
def expand(
    url: str = typer.Argument(..., help="ValueSet URL, e.g. https://fhir-server.id/ValueSet/kemendagri-wilayah-village"),
    filter: str | None = typer.Option(None, "--filter", help="text filter on the display"),
    count: int = typer.Option(20, "--count"),
    offset: int = typer.Option(0, "--offset"),
) -> None:
    """ValueSet/$expand with a text filter and paging."""
    _run(lambda engine: engine.expand(url, filter=filter, count=count, offset=offset))


@terminology_app.command()
def translate(
    code: str = typer.Argument(...),
    system: str = typer.Option(..., "--system", help="the code's system"),
    url: str | None = typer.Option(None, "--url", help="ConceptMap URL"),
    target: str | None = typer.Option(None, "--target-system", help="the wanted target system"),
    reverse: bool = typer.Option(False, "--reverse"),
) -> None:
    """ConceptMap/$translate (forward, or --reverse)."""
    _run(lambda engine: engine.translate(url=url, code=code, system=system, target_system=target, reverse=reverse))
