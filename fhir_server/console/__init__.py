"""The web console (docs/console.md): the landing page, the offline API docs and, unless
``FHIR_CONSOLE=false``, the console at ``/console`` — server-rendered pages that reach FHIR data
only through the one pipeline, by the signed-in user's principal."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"


def install(app: FastAPI, *, enabled: bool) -> None:
    from .routes import public_router, router

    app.mount("/console/static", StaticFiles(directory=STATIC_DIR), name="console-static")
    app.include_router(public_router)
    if enabled:
        app.include_router(router)
