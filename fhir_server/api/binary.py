"""Binary in its native form (binary.html#rest, http.html#binary).

A client that sends a PDF or an image with its own Content-Type to ``POST [base]/Binary`` (or
``PUT [base]/Binary/[id]``) is storing a Binary resource: ``contentType`` from the header, ``data``
the bytes (base64), ``securityContext`` from ``X-Security-Context``. A read or vread whose
``Accept`` names no FHIR format (``Accept: application/pdf``) answers the bytes with their
``contentType``. Everything else about them (authorization, validation, audit, change log,
versions, ETags) is that of the Binary resource, through the same routes and pipeline.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from fhir_server import jsonio
from fhir_server.api import formats, http
from fhir_server.config import Settings
from fhir_server.errors import FhirError

_WILDCARD = "*/*"
_DEFAULT_TYPE = "application/octet-stream"


def is_native_body(request: Request) -> bool:
    """A Content-Type that is not a FHIR format (none at all is read as FHIR JSON)."""
    content_type = request.headers.get("content-type")
    return content_type is not None and content_type.strip() != "" and not formats.is_fhir_media(content_type)


async def read_native(request: Request, settings: Settings, res_id: str | None) -> dict[str, Any]:
    """The Binary resource a native body stands for."""
    raw = await http.read_body(request, settings.max_body_bytes)
    # a code has no runs of blanks (datatypes.html#code): "text/plain;  charset=utf-8" is kept with one
    content_type = " ".join((request.headers.get("content-type") or "").split())
    resource: dict[str, Any] = {"resourceType": "Binary", "contentType": content_type}
    if res_id is not None:
        resource["id"] = res_id
    context = request.headers.get("x-security-context")
    if context:
        resource["securityContext"] = {"reference": context.strip()}
    if raw:
        resource["data"] = base64.b64encode(raw).decode("ascii")
    return resource


def native_wanted(request: Request) -> bool:
    """No ``_format``, and an Accept that names media types of which none is a FHIR format
    (``*/*`` alone, or no Accept, is answered as FHIR JSON, as before)."""
    if request.scope.get("query_string") and request.query_params.get("_format"):
        return False
    accept = request.headers.get("accept")
    if not accept:
        return False
    media = [part.split(";")[0].strip().lower() for part in accept.split(",") if part.strip()]
    media = [m for m in media if m]
    if not media or all(m == _WILDCARD for m in media):
        return False
    return not any(formats.is_fhir_media(m) for m in media)


def native_response(body: bytes, status: int, headers: dict[str, str]) -> Response:
    """The stored Binary's bytes with its contentType (and its securityContext as a header)."""
    resource = jsonio.loads(body)
    try:
        data = base64.b64decode(resource.get("data") or "", validate=False)
    except (binascii.Error, ValueError):  # stored data was checked as base64 on write
        raise FhirError.of(500, "exception", "The stored Binary data is not base64") from None
    out = dict(headers)
    context = (resource.get("securityContext") or {}).get("reference")
    if isinstance(context, str):
        out["X-Security-Context"] = context
    return Response(data, status, out, media_type=resource.get("contentType") or _DEFAULT_TYPE)
