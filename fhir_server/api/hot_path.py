"""The hot paths: ``GET /fhir/{type}/{id}``, ``GET /fhir/{type}?...`` and plain ``POST /fhir/{type}``
answered before FastAPI's router.

Reads by id and searches are most of an interoperability server's traffic,
and FastAPI's routing and parameter machinery cost more than a read and a
good part of an indexed search. This layer serves only the plain success case
— a known type, JSON wanted, no ``_format``/``_pretty``, the caller allowed;
for reads also a current resource and no conditional-read headers — with the
same service calls and headers as the routes. Everything else (errors, XML,
304s, AuditEvent) falls through to the normal route unchanged, which then
answers it itself. It sits inside the audit and guard layers, so those apply
as usual, but outside FastAPI's own middleware (see ``app.FhirApp``): nothing
may escape it, so every read or search failure falls through to the routes, and a
create's failure (its body is consumed by then) goes to the app's exception handlers.
"""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from fhir_server.api import formats
from fhir_server.api.access import principal
from fhir_server.api.http import JSON_CONTENT_TYPE, version_headers
from fhir_server.api.routes import create, type_search
from fhir_server.errors import FhirError
from fhir_server.resource_types import SERVER_OWNED, is_resource_type
from fhir_server.search.parse import FORMAT_PARAMS
from fhir_server.urlcodec import parse_qsl

_READ_PATH = re.compile(r"^/fhir/([A-Z][A-Za-z]{1,63})/([A-Za-z0-9\-.]{1,64})$")
_TYPE_PATH = re.compile(r"^/fhir/([A-Z][A-Za-z]{1,63})$")
_CONDITIONAL = (b"if-none-match", b"if-modified-since")


class HotPath:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
        elif scope["method"] == "GET":
            if scope.get("query_string"):
                await self._search(scope, receive, send)
            else:
                await self._read(scope, receive, send)
        elif scope["method"] == "POST" and not scope.get("query_string"):
            await self._create(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _create(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``POST /fhir/{type}`` without If-None-Exist: the route's own function, without FastAPI's
        routing and middleware (~17 % of a create's event-loop time, py-spy). The body is read
        here, so errors cannot fall through: they get the app's own exception handlers."""
        match = _TYPE_PATH.match(scope["path"])
        if match is None or not is_resource_type(match.group(1)) or any(name == b"if-none-exist" for name, _ in scope["headers"]):
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            response = await create(request, match.group(1))
        except Exception as exc:  # noqa: BLE001 - answered as the routes' errors are
            handlers = scope["app"].exception_handlers
            response = await handlers[FhirError if isinstance(exc, FhirError) else Exception](request, exc)
        await response(scope, receive, send)

    async def _read(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = _READ_PATH.match(scope["path"])
        if match is None or not is_resource_type(match.group(1)) or match.group(1) in SERVER_OWNED:
            await self.app(scope, receive, send)
            return
        accept = None
        for name, value in scope["headers"]:
            if name in _CONDITIONAL:
                await self.app(scope, receive, send)
                return
            if name == b"accept":
                accept = value.decode("latin-1")
        res_type, res_id = match.groups()
        try:
            if formats.format_from_accept(accept) != formats.JSON:
                raise FhirError(406)
            # the pipeline's own read, with its checks, without the event-loop hop of ``handle``
            stored = scope["app"].state.fhir.pipeline.read_by_id(principal(Request(scope)), res_type, res_id).stored
        except Exception:  # noqa: BLE001 - the route answers errors (4xx, database trouble), XML and the rest
            await self.app(scope, receive, send)
            return
        body = stored.body or b""
        headers = [(k.lower().encode(), v.encode()) for k, v in version_headers(stored).items()]
        await _send_json(send, body, headers)

    async def _search(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = _TYPE_PATH.match(scope["path"])
        if match is None or match.group(1) in SERVER_OWNED:
            await self.app(scope, receive, send)
            return
        # the same decoding as Starlette's request.query_params
        params = parse_qsl(scope["query_string"].decode("latin-1"))
        request = Request(scope)
        try:
            plain_json = (
                not any(name in FORMAT_PARAMS for name, _ in params)
                and formats.format_from_accept(request.headers.get("accept")) == formats.JSON
            )
            if not plain_json:  # the route does formats
                await self.app(scope, receive, send)
                return
            body = type_search(request, match.group(1), params)
        except Exception:  # noqa: BLE001 - errors (4xx, statement timeouts) are the route's to answer
            await self.app(scope, receive, send)
            return
        await _send_json(send, body, [])


async def _send_json(send: Send, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    # the order Starlette's Response sends them in (the routes'): the same bytes on the wire
    headers = [*headers, (b"content-length", str(len(body)).encode()), (b"content-type", JSON_CONTENT_TYPE.encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
