"""Requests in another form than the routes' own, answered as the canonical request.

``app.FhirApp`` passes every HTTP request through :func:`canonical_request` before any
other layer (guard, audit, hot path, FastAPI), so each rule lives here once:

- a path under ``/fhir`` with a trailing or doubled slash is the path without it
  (``url_forms.canonical_fhir_path``), answered directly, never redirected;
- ``HEAD`` is ``GET`` without the body (RFC 9110 §9.3.2), on every path (reads, searches,
  history, ``metadata``, ``$operations``, Bulk Data status and files, the console): the GET runs,
  with its authorization and audit, and only the body is dropped, so status and headers
  (ETag, Content-Type, Content-Length) are the GET's. The one GET that is not safe, the
  ``$export`` kick-off (it starts a job), checks :func:`is_head` and answers 405 after the
  kick-off's own checks instead of starting one (``bulk/routes.py``);
- ``GET [base]/[type]/_search?...`` (and ``[base]/_search``) is the search
  (``url_forms.search_get_path``).
"""

from __future__ import annotations

import re
from typing import Any

from starlette.routing import Match, Route
from starlette.types import Message, Scope, Send

from fhir_server.url_forms import FHIR_BASE_PATH, canonical_fhir_path, canonical_path, search_get_path

#: set in the scope a HEAD request is answered with (as a GET)
_HEAD = "fhir.head"


def canonical_request(scope: Scope, send: Send) -> tuple[Scope, Send]:
    """The scope (and send) to hand on for the HTTP request ``scope``."""
    path = scope["path"]
    canonical = canonical_fhir_path(path)
    if canonical is not None:
        scope["path"] = path = canonical
        raw = scope.get("raw_path")
        if raw is not None:
            scope["raw_path"] = canonical_path(raw.decode("latin-1")).encode("latin-1")
    if scope["method"] == "HEAD":
        # a copy: the server keeps HEAD in its own scope (uvicorn then sends no body either)
        scope = {**scope, "method": "GET", _HEAD: True}
        send = _headers_only(send)
    if scope["method"] == "GET" and path.endswith("/_search") and path.startswith(FHIR_BASE_PATH + "/"):
        scope["path"] = search_get_path(path)
        raw = scope.get("raw_path")
        if raw is not None:
            scope["raw_path"] = search_get_path(raw.decode("latin-1")).encode("latin-1")
    return scope, send


def is_head(scope: Scope) -> bool:
    """Whether the GET being answered is a HEAD (its body is dropped): for a GET that is not
    safe to run for a HEAD."""
    return _HEAD in scope


#: GET paths that are not safe (they start work): their HEAD is 405, and ``Allow`` omits HEAD
HEAD_REFUSED = re.compile(r"(^|/)\$export$")


def _headers_only(send: Send) -> Send:
    async def send_headers_only(message: Message) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            message = {**message, "body": b""}
        await send(message)

    return send_headers_only


def allowed_methods(routes: list[Any], scope: Scope) -> list[str]:
    """The methods the app's routes answer for the path of ``scope`` (the ``Allow`` header of a 405
    and of ``OPTIONS``): every route whose path matches, whatever its method. Starlette names only
    the first matching route's methods (``Allow: GET`` on ``/fhir/Patient``, which takes POST,
    PUT, PATCH and DELETE too). Included routers (FastAPI keeps them whole) are walked."""
    methods: set[str] = set()

    def walk(entries: list[Any]) -> None:
        for route in entries:
            original = getattr(route, "original_router", None)
            if original is not None:
                walk(original.routes)
            elif isinstance(route, Route) and route.methods and route.matches(scope)[0] != Match.NONE:
                methods.update(route.methods)

    walk(routes)
    if "GET" in methods and not HEAD_REFUSED.search(scope["path"]):
        methods.add("HEAD")  # HEAD is GET without the body (canonical_request)
    if methods:
        methods.add("OPTIONS")
    return sorted(methods)
