"""The hot path: ``GET /fhir/{type}/{id}`` answered before FastAPI's router.

Reads by id are most of an interoperability server's traffic, and FastAPI's
routing and parameter machinery cost more than the read itself. This layer
serves only the plain success case — a known type, a current resource, no
query string, no conditional-read headers, JSON wanted, the caller allowed —
with the same service call and headers as the route; everything else
(errors, XML, ``_pretty``, 304s, AuditEvent) falls through to the normal route
unchanged. It sits inside the audit and guard layers, so those apply as usual.
"""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from fhir_server.api import formats
from fhir_server.api.access import principal
from fhir_server.api.http import JSON_CONTENT_TYPE, version_headers
from fhir_server.errors import FhirError
from fhir_server.registry import SERVER_OWNED, is_resource_type

_PATH = re.compile(r"^/fhir/([A-Z][A-Za-z]{1,63})/([A-Za-z0-9\-.]{1,64})$")
_CONDITIONAL = (b"if-none-match", b"if-modified-since")


class FastRead:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or scope.get("query_string"):
            await self.app(scope, receive, send)
            return
        match = _PATH.match(scope["path"])
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
            principal(Request(scope)).require(res_type, "read")
            stored = scope["app"].state.fhir.resources.read(res_type, res_id)
        except FhirError:
            await self.app(scope, receive, send)  # the route answers errors, XML and the rest
            return
        body = stored.body or b""
        headers = [(k.lower().encode(), v.encode()) for k, v in version_headers(stored).items()]
        headers += [(b"content-type", JSON_CONTENT_TYPE.encode()), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
