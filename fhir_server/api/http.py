"""HTTP helpers shared by the routes: body reading, Prefer, base URL, responses."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import Response

from fhir_server import jsonio
from fhir_server.api import formats
from fhir_server.config import Settings
from fhir_server.errors import FhirError, Issue, operation_outcome
from fhir_server.model.limits import check_json
from fhir_server.search.parse import FORMAT_PARAMS
from fhir_server.service.results import Stored
from fhir_server.timeutil import to_http_date

JSON_CONTENT_TYPE = "application/fhir+json; charset=utf-8"
XML_CONTENT_TYPE = "application/fhir+xml; charset=utf-8"


#: request content codings read (RFC 9110 §8.4.1): zlib's formats; "deflate" is the zlib format
#: (some clients send raw deflate: tried when the zlib header is missing)
_CODINGS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
ACCEPTED_CODINGS = "gzip, deflate"


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes; a body sent with
    ``Content-Encoding: gzip`` or ``deflate`` is decoded (HAPI's client and others compress
    large bodies), the limit applying to the decoded bytes too."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise FhirError.of(413, "too-costly", f"The body ({declared} bytes) is larger than the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise FhirError.of(413, "too-costly", f"The body is larger than the limit of {limit} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    coding = request.headers.get("content-encoding")
    return decode_content(raw, coding, limit) if coding else raw


def decode_content(raw: bytes, header: str, limit: int) -> bytes:
    """``raw`` with the content codings of a Content-Encoding header undone (last applied, first
    undone); 415 naming the codings read for any other, 400 for a body that is not what its coding
    says, 413 when the decoded body passes ``limit`` bytes (a small gzip can hold gigabytes)."""
    codings = [c.strip().lower() for c in header.split(",") if c.strip()]
    for coding in reversed(codings):
        if coding == "identity":
            continue
        wbits = _CODINGS.get(coding)
        if wbits is None:
            raise FhirError(
                415,
                [Issue("error", "not-supported", f"Content-Encoding '{coding}' is not supported; send the body as is, gzip or deflate")],
                {"Accept-Encoding": ACCEPTED_CODINGS},
            )
        raw = _inflate(raw, wbits, coding, limit)
    return raw


def _inflate(raw: bytes, wbits: int, coding: str, limit: int) -> bytes:
    for bits in (wbits, -zlib.MAX_WBITS) if coding == "deflate" else (wbits,):
        inflater = zlib.decompressobj(bits)
        try:
            out = inflater.decompress(raw, limit + 1)
        except zlib.error:
            continue
        if len(out) > limit:
            raise FhirError.of(413, "too-costly", f"The body decoded from {coding} is larger than the limit of {limit} bytes")
        if not inflater.eof or inflater.unused_data:
            break  # cut short, or more after its end: not one whole body of this coding
        return out
    raise FhirError.of(400, "structure", f"The body is not valid {coding} data (Content-Encoding: {coding})")


async def read_json(request: Request, settings: Settings, content_type: str | None = None) -> Any:
    """The body parsed (JSON or XML by Content-Type) and checked against the size, depth,
    element-count and control-character limits."""
    raw = await read_body(request, settings.max_body_bytes)
    return parse_json(raw, content_type or request.headers.get("content-type"), settings)


F = TypeVar("F", bound=Callable[..., Any])


def get_and_post(router: APIRouter, path: str, **options: Any) -> Callable[[F], F]:
    """Register ``path`` for GET and for POST as two routes: one route with both methods gives
    both the same OpenAPI operation id (FastAPI warns, and /docs shows one of them twice)."""

    def register(endpoint: F) -> F:
        router.get(path, **options)(endpoint)
        router.post(path, **options)(endpoint)
        return endpoint

    return register


def parse_json(raw: bytes, content_type: str | None, settings: Settings) -> Any:
    kind = formats.format_from_content_type(content_type)
    value = formats.parse_body(raw, kind)
    json_text = raw if kind == formats.JSON else None  # an XML body's text says nothing of the JSON made from it
    check_json(value, max_depth=settings.max_json_depth, max_elements=settings.max_json_elements, raw=json_text)
    return value


async def read_resource(request: Request, settings: Settings) -> dict[str, Any]:
    value = await read_json(request, settings)
    if not isinstance(value, dict):
        raise FhirError.of(400, "structure", "The body must be a JSON object (a FHIR resource)")
    return value


def prefer(request: Request) -> dict[str, str]:
    """The Prefer header as {name: value} in lower case, e.g. {"return": "minimal", "handling": "strict"}.

    Names are case-insensitive (RFC 7240); the values FHIR defines (``minimal``,
    ``representation``, ``OperationOutcome``, ``strict``, ``lenient``) are compared without case
    too, so ``return=Minimal`` is not silently taken for the default."""
    out: dict[str, str] = {}
    for header in request.headers.getlist("prefer"):
        for part in header.split(","):
            for token in part.split(";"):
                name, _, value = token.strip().partition("=")
                if name.strip():
                    out[name.strip().lower()] = value.strip().strip('"').lower()
    return out


def base_url(request: Request, configured: str) -> str:
    """The FHIR base: the configured public URL, else scheme://host[root_path]/fhir of the request."""
    if configured:
        return configured.rstrip("/")
    scope = request.scope
    host = request.headers.get("host")
    if not host:
        server = scope.get("server") or ("localhost", 80)
        host = f"{server[0]}:{server[1]}"
    return f"{scope.get('scheme', 'http')}://{host}{scope.get('root_path', '')}/fhir"


def output_format(request: Request) -> str:
    """The answer's format: ``_format``, else the Accept header; when that names no FHIR format
    (absent, ``*/*``), the request body's: a client that sends XML and no Accept reads XML (as
    HAPI answers it), not a JSON it may have no parser for."""
    if request.scope.get("query_string"):
        fmt = request.query_params.get("_format")
        if fmt:
            return formats.format_from_param(fmt)
    accept = request.headers.get("accept")
    fmt = formats.format_from_accept(accept)
    if fmt == formats.JSON and not formats.names_a_format(accept):
        content_type = request.headers.get("content-type")
        if content_type and formats.is_xml_media(content_type):
            return formats.XML
    return fmt


def format_params(request: Request) -> list[tuple[str, str]]:
    """The request's ``_format`` and ``_pretty`` parameters."""
    if not request.scope.get("query_string"):
        return []
    return [(k, v) for k, v in request.query_params.multi_items() if k in FORMAT_PARAMS]


def is_pretty(request: Request) -> bool:
    return bool(request.scope.get("query_string")) and request.query_params.get("_pretty", "").lower() == "true"


def body_response(
    request: Request,
    body: bytes,
    status: int = 200,
    headers: dict[str, str] | None = None,
    *,
    fmt: str | None = None,
) -> Response:
    """A resource or Bundle from stored JSON bytes, in the format the client asked for
    (406 when it asked for one we cannot produce)."""
    fmt = fmt or output_format(request)
    carried = format_params(request)  # also put in a Bundle's links: its next page comes alike
    pretty = is_pretty(request)
    if fmt == formats.JSON and not pretty and not (carried and b'"link"' in body):
        return Response(body, status, headers, media_type=JSON_CONTENT_TYPE)  # the stored bytes as they are
    data = jsonio.loads(body)  # once, whatever follows (exact decimals: XML carries their digits)
    if carried:
        formats.add_link_params(data, carried)
    if fmt == formats.XML:
        return Response(formats.json_to_xml(data, pretty=pretty), status, headers, media_type=XML_CONTENT_TYPE)
    return Response(jsonio.dumps(data, pretty=pretty), status, headers, media_type=JSON_CONTENT_TYPE)


def outcome_response(request: Request, issues: list[Issue], status: int, headers: dict[str, str] | None = None) -> Response:
    try:
        fmt = output_format(request)
    except FhirError:
        fmt = formats.JSON  # an error about the format must itself be readable
    try:
        return body_response(request, jsonio.dumps(operation_outcome(issues)), status, headers, fmt=fmt)
    except FhirError:
        return body_response(request, jsonio.dumps(operation_outcome(issues)), status, headers, fmt=formats.JSON)


def version_headers(stored: Stored, base: str | None = None) -> dict[str, str]:
    """ETag and Last-Modified; with ``base``, also the Location of the version."""
    headers = {"ETag": stored.etag, "Last-Modified": to_http_date(stored.updated_us)}
    if base is not None:
        headers["Location"] = f"{base}/{stored.location}"
    return headers
