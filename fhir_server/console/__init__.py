"""The web console (docs/console.md): the landing page, the offline API docs and, unless
``FHIR_CONSOLE=false``, the console at ``/console`` — server-rendered pages that reach FHIR data
only through the one pipeline, by the signed-in user's principal."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"


def install(app: FastAPI, *, enabled: bool, timezone: str = "Asia/Jakarta") -> None:
    from .clock import zone

    zone(timezone)  # an unknown FHIR_CONSOLE_TIMEZONE stops the start-up with a clear message
    from . import admin_pages, sync_pages  # noqa: F401  (their pages join routes.router)
    from .routes import public_router, router

    app.mount("/console/static", StaticFiles(directory=STATIC_DIR), name="console-static")
    app.include_router(public_router)
    if enabled:
        app.include_router(router)
