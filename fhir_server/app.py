"""create_app(settings): the FastAPI application, its error handlers and lifespan."""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from fhir_server import __version__
from fhir_server.api import http, request_forms
from fhir_server.api.auth_routes import router as auth_router
from fhir_server.api.compression import CompressedResponses
from fhir_server.api.guard import RequestGuard
from fhir_server.api.hot_path import HotPath
from fhir_server.api.operations import router as operations_router
from fhir_server.api.request_forms import canonical_request
from fhir_server.api.routes import router
from fhir_server.audit.recorder import AuditRecorder, NullRecorder
from fhir_server.bulk.routes import router as bulk_router
from fhir_server.bulk.worker import start_worker
from fhir_server.config import Settings
from fhir_server.console import install as install_console
from fhir_server.errors import FhirError, Issue
from fhir_server.satusehat.setup import start_satusehat_worker
from fhir_server.service.prepare_helper import PrepareHelper
from fhir_server.service.seed import seed_conformance
from fhir_server.service.warm import warm_up
from fhir_server.state import build_state
from fhir_server.storage import migrate
from fhir_server.subscriptions.setup import start_subscription_worker
from fhir_server.subscriptions.websocket import router as subscription_socket_router

log = logging.getLogger("fhir_server")


class FhirApp(FastAPI):
    """FastAPI with the FHIR layers around its whole stack instead of inside it.

    Outermost the guard (query limits, security headers, the audit trail), then CORS
    when configured, then ``HotPath`` (reads by id, plain searches and plain creates),
    then FastAPI itself. Those requests are answered without entering FastAPI's own
    middleware (error, telemetry and body-limit layers: ~1-2 µs each of a ~60 µs
    request); ``HotPath`` hands read and search errors to the routes and answers create
    errors with the app's exception handlers, so every error is still answered by them.
    Before all of them, ``api.request_forms.canonical_request``: a trailing or doubled slash
    under ``/fhir`` is the path without it, and HEAD is GET without a body.
    """

    def __init__(self, outer_layers: Callable[[ASGIApp], ASGIApp], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.outer = outer_layers(super().__call__)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await super().__call__(scope, receive, send)
            return
        scope["app"] = self
        if scope["type"] == "http":
            scope, send = canonical_request(scope, send)
        await self.outer(scope, receive, send)


def create_app(settings: Settings | None = None, *, freeze_gc: bool = False) -> FastAPI:
    """The application. ``freeze_gc`` (the server's worker processes): once started, build the
    common types' models and plans (service/warm.py) and move every object alive into the garbage
    collector's permanent generation (``gc.freeze``), so its full collections scan only what
    requests create. Not for apps made in tests: whatever cyclic garbage a frozen object later
    becomes is never collected."""
    settings = settings or Settings.from_env()
    state = build_state(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.migrate_on_start:
            migrate.upgrade(state.db.engine)
            seed_conformance(state.resources)
        if settings.auth == "token":
            state.token_verifier()  # fail at start-up, not on the first request, if the key cannot be had
        helper = None
        if freeze_gc:
            warm_up()  # the common types' models and plans: built now, and frozen below
            # ~170k objects of models, schemas and tables live for the whole process; a full
            # collection walked them all (82 ms measured), and queued audit events make
            # full collections more frequent
            gc.collect()
            gc.freeze()
            # a young collection every 20,000 new containers instead of 700: a Bundle makes ~15 a
            # resource, each of which survived a few collections for nothing (one client on the
            # Synthea sample: paired B/A 0.980, 0.985, 0.965; 100,000 gained nothing more)
            gc.set_threshold(20_000, 10, 10)
            if settings.prepare_helper:
                # forked now: it starts with the models just built, before this process starts threads
                helper = state.services.bundles.prepare_helper = PrepareHelper(settings.r4b_model_check, settings.region_codes)
                helper.start()
        export_worker = start_worker(state) if settings.export_worker else None
        subscription_worker = start_subscription_worker(state) if settings.subscription_worker else None
        satusehat_worker = start_satusehat_worker(state) if settings.satusehat_worker else None
        audit_flusher = None
        if settings.audit:
            recorder = AuditRecorder(state.db, flush_interval=settings.audit_flush_interval)
            audit_flusher = asyncio.create_task(recorder.run_on_loop(state.pipeline.writes))
            state.recorder = recorder
            state.pipeline.queue_audit = recorder.record  # batch entries (Pipeline._audit_entry)
        else:
            state.recorder = NullRecorder()
        try:
            yield
        finally:
            if helper is not None:
                state.services.bundles.prepare_helper = None
                helper.close()
            if export_worker is not None:
                export_worker.stop()
            if subscription_worker is not None:
                await subscription_worker.stop()
            if satusehat_worker is not None:
                await satusehat_worker.stop()
            if audit_flusher is not None:
                audit_flusher.cancel()
                await asyncio.gather(audit_flusher, return_exceptions=True)
            state.recorder.close()
        state.db.dispose()

    def audit_recorder(scope: Scope) -> AuditRecorder | None:
        recorder = state.recorder  # with audit on: None until started, then the AuditRecorder
        return None if isinstance(recorder, NullRecorder) else recorder

    cors_origins = [o.strip() for o in settings.cors_origins.split(",") if o.strip()]

    def outer_layers(inner: ASGIApp) -> ASGIApp:
        layers: ASGIApp = HotPath(inner)
        if cors_origins:
            layers = CORSMiddleware(
                layers,
                allow_origins=cors_origins,
                allow_methods=["*"],
                allow_headers=["*"],
                expose_headers=["ETag", "Location", "Last-Modified", "Content-Location"],
            )
        if settings.gzip_min_bytes > 0:
            layers = CompressedResponses(layers, settings.gzip_min_bytes)
        return RequestGuard(
            layers,
            max_query_params=settings.max_query_params,
            max_query_bytes=settings.max_query_bytes,
            # it also queues the AuditEvents, so even requests it or auth refuse leave one
            # (audit off: not even the call that would feed the NullRecorder)
            audit_for=audit_recorder if settings.audit else None,
        )

    app = FhirApp(
        outer_layers,
        title="fhir-server-id",
        version=__version__,
        description="FHIR R4 (4.0.1) server for Indonesian health interoperability. FHIR base: /fhir",
        lifespan=lifespan,
        # /docs is served by the console package from vendored assets (works offline); no ReDoc
        docs_url=None,
        redoc_url=None,
        **_telemetry_option(settings),
    )
    app.state.fhir = state
    app.include_router(router)  # the hot interactions first: routes match in order
    app.include_router(auth_router)
    app.include_router(bulk_router)  # before the generic $operation routes
    app.include_router(operations_router)
    app.include_router(subscription_socket_router)
    install_console(app, enabled=settings.console, timezone=settings.console_timezone)  # the landing page, offline /docs, the web console
    _install_error_handlers(app)
    return app


def _telemetry_option(settings: Settings) -> dict[str, Any]:
    """FastAPI >= 0.165 checks for OpenTelemetry providers on every request (~6 us, a tenth of a
    read by id) even when none is configured; switch that off unless asked for."""
    if settings.opentelemetry or "telemetry" not in inspect.signature(FastAPI.__init__).parameters:
        return {}
    return {"telemetry": {"tracing": False, "metrics": False, "logs": False}}


def create_app_from_env() -> FastAPI:
    """Factory for uvicorn workers: settings come from FHIR_* variables."""
    return create_app(Settings.from_env(), freeze_gc=True)


def _driver_error(exc: BaseException) -> str:
    """The class name of the driver's error, raw or wrapped by SQLAlchemy (psycopg's are named
    after the SQLSTATE: ``QueryCanceled``, ``DeadlockDetected``, ...)."""
    return type(getattr(exc, "orig", exc)).__name__


def _is_statement_timeout(exc: BaseException) -> bool:
    return _driver_error(exc) == "QueryCanceled"


def _is_lock_conflict(exc: BaseException) -> bool:
    """The database rolled the write back to break a conflict between concurrent writers."""
    return _driver_error(exc) in ("DeadlockDetected", "SerializationFailure")


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(FhirError)
    async def fhir_error(request: Request, exc: FhirError) -> Response:
        return http.outcome_response(request, exc.issues, exc.status, exc.headers or None)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        issues = [Issue("error", "invalid", f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg')}") for e in exc.errors()]
        return http.outcome_response(request, issues, 400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not-found", 405: "not-supported"}.get(exc.status_code, "processing")
        text = {
            404: f"No FHIR endpoint at {request.url.path}",
            405: f"{request.method} is not allowed on {request.url.path}",
        }.get(exc.status_code, str(exc.detail))
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            allow = request_forms.allowed_methods(request.app.router.routes, request.scope)
            if request.method == "OPTIONS" and allow:
                # RFC 9110 §9.3.7: OPTIONS answers what the target takes (CORS preflights are
                # answered before this by the CORS layer, when it is on)
                return Response(status_code=200, headers={"Allow": ", ".join(allow)})
            if allow:
                headers["Allow"] = ", ".join(allow)
        return http.outcome_response(request, [Issue("error", code, text)], exc.status_code, headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        if _is_statement_timeout(exc):
            issue = Issue(
                "error", "too-costly", "The request took longer than the database statement timeout (FHIR_STATEMENT_TIMEOUT); narrow it"
            )
            return http.outcome_response(request, [issue], 400)
        if _is_lock_conflict(exc):
            log.warning("concurrent writes conflicted on %s %s: %s", request.method, request.url.path, exc)
            issue = Issue("error", "conflict", "A concurrent write held what this one needed; nothing was written: retry")
            return http.outcome_response(request, [issue], 409)
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return http.outcome_response(request, [Issue("fatal", "exception", "Internal server error")], 500)
