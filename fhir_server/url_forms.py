"""One rule for the path forms that name the same FHIR endpoint.

Clients join a base URL that ends in ``/`` with a path, or add one at the end:
``POST http://host/fhir/`` for a transaction, ``GET http://host/fhir/Patient/``,
``http://host/fhir//Patient``. A FHIR path never has an empty segment (types, ids,
``_history``, versions and ``$operations`` are all non-empty), so dropping empty
segments changes no meaning. The ASGI entry of the app (``app.FhirApp``) applies it to
every request under ``/fhir`` before any layer or route sees the path, and the Bundle
parser applies it to every ``entry.request.url``: nothing is answered with a redirect,
which clients do not follow for a POST.

A GET of ``[type]/_search`` (or ``_search`` at the base) is the search itself: ``_search`` is
defined for POST, and HAPI's client sends its searches as ``GET [base]/Patient/_search?...``
when set to its ``GET_WITH_SEARCH`` style; that was a 405.
"""

from __future__ import annotations

from fhir_server.resource_types import is_resource_type

FHIR_BASE_PATH = "/fhir"


def canonical_path(path: str) -> str:
    """``path`` without empty segments: no trailing slash, no doubled slashes (``/`` stays ``/``)."""
    if not path.endswith("/") and "//" not in path:
        return path  # the common case: nothing to do
    lead = "/" if path.startswith("/") else ""
    return lead + "/".join(part for part in path.split("/") if part)


def canonical_fhir_path(path: str) -> str | None:
    """The canonical form of a request path under the FHIR base when it differs from ``path``;
    None when ``path`` is canonical already or lies outside ``/fhir``."""
    if not path.endswith("/") and "//" not in path:
        return None
    canonical = canonical_path(path)
    if canonical == FHIR_BASE_PATH or canonical.startswith(FHIR_BASE_PATH + "/"):
        return canonical
    return None


def search_get_path(path: str) -> str:
    """The path a GET (or HEAD) of ``path`` means: ``[type]/_search`` and ``_search`` at the base
    are the search itself, without the ``_search`` segment; any other path (``Patient/1/_search``
    is no search) is itself."""
    if path == "_search":
        return ""
    if not path.endswith("/_search"):
        return path
    before = path[:-8]
    parent, _, last = before.rpartition("/")
    # the base, a type (``Patient/1/Observation`` too), or any one segment after the base (an
    # unknown type is then answered as one: 404 naming it)
    return before if before in ("", FHIR_BASE_PATH) or parent in ("", FHIR_BASE_PATH) or is_resource_type(last) else path
