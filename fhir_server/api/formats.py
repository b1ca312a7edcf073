"""Wire formats: FHIR JSON (stored as is) and FHIR XML (converted by the R4 tables,
``model/xml_format.py``).

XML exists for clients that need it; JSON is the native, fast path. XML bodies
with a DOCTYPE are refused outright: FHIR forbids DTDs, and entity expansion is
the classic XML attack.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from fhir_server import jsonio
from fhir_server.errors import FhirError
from fhir_server.model import xml_format
from fhir_server.model.structure import expression_at
from fhir_server.urlcodec import media_type_value

JSON = "json"
XML = "xml"
FHIR_JSON = "application/fhir+json"
FHIR_XML = "application/fhir+xml"

_JSON_TYPES = {"application/fhir+json", "application/json", "application/json+fhir", "text/json"}
_XML_TYPES = {"application/fhir+xml", "application/xml", "application/xml+fhir", "text/xml"}
_FORMAT_PARAM = {
    "json": JSON,
    "application/json": JSON,
    "application/fhir+json": JSON,
    "application/json+fhir": JSON,
    "xml": XML,
    "text/xml": XML,
    "application/xml": XML,
    "application/fhir+xml": XML,
    "application/xml+fhir": XML,
}
#: Accept headers seen on nearly every request, answered without parsing
_COMMON_JSON_ACCEPTS = frozenset({"*/*", "application/fhir+json", "application/json", "application/json, */*"})
_DTD = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
_ROOT_TAG = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?([A-Za-z]+)[\s/>]")


def _media_type(header: str) -> str:
    return header.split(";", 1)[0].strip().lower()


def _other_fhir_version(media: str) -> str | None:
    """The ``fhirVersion`` of a media type (versioning.html#mt-version) when it is not R4 (4.0,
    4.0.x); None when it is R4 or absent. This server speaks R4 only: a client asking for another
    version must not get R4 as if it were what it asked for."""
    for part in media.split(";")[1:]:
        name, _, value = part.strip().partition("=")
        if name.strip().lower() == "fhirversion":
            version = value.strip().strip('"')
            if version != "4.0" and not version.startswith("4.0."):
                return version
    return None


def _charset(media: str) -> str | None:
    for part in media.split(";")[1:]:
        name, _, value = part.strip().partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"')
    return None


def format_from_param(value: str) -> str:
    """JSON or XML for a ``_format`` value: ``json``, ``xml`` or a mime type, with parameters
    (``application/fhir+json;fhirVersion=4.0``, http.html#mime-type) or not (406 otherwise).
    A ``+`` sent unescaped in a query arrives as a space."""
    media = media_type_value(value)
    fmt = _FORMAT_PARAM.get(media) or (JSON if media in _JSON_TYPES else XML if media in _XML_TYPES else None)
    if fmt is None:
        raise FhirError.of(406, "not-supported", f"_format '{value}' is not supported (use json or xml)")
    version = _other_fhir_version(value)
    if version is not None:
        raise FhirError.of(406, "not-supported", f"_format asks for FHIR version {version}; this server serves R4 (fhirVersion=4.0) only")
    return fmt


def format_from_accept(accept: str | None) -> str:
    """Pick JSON or XML from an Accept header (406 when neither is acceptable)."""
    if not accept or accept in _COMMON_JSON_ACCEPTS:
        return JSON
    # (q, JSON first, earlier first): among types of equal q the server chooses (RFC 9110 §12.5.1)
    # and takes its native JSON. HAPI's client sends fhir+xml and fhir+json both at q=1.0, XML
    # first: it got XML (slower to write than the stored JSON)
    best: tuple[float, bool, int, str] | None = None
    versions: list[str] = []
    for index, part in enumerate(accept.split(",")):
        pieces = part.split(";")
        media = pieces[0].strip().lower()
        q = 1.0
        for p in pieces[1:]:
            name, _, val = p.strip().partition("=")
            if name == "q":
                try:
                    q = float(val)
                except ValueError:
                    q = 0.0
        if media in _JSON_TYPES or media in ("*/*", "application/*", "text/*"):
            fmt = JSON
        elif media in _XML_TYPES:
            fmt = XML
        else:
            continue
        version = _other_fhir_version(part)
        if version is not None:
            versions.append(version)  # acceptable only in a FHIR version this server does not serve
            continue
        if q > 0 and (best is None or (q, fmt == JSON, -index) > best[:3]):
            best = (q, fmt == JSON, -index, fmt)
    if best is None:
        also = f" (FHIR version {', '.join(versions)} asked; this server serves R4, fhirVersion=4.0)" if versions else ""
        raise FhirError.of(
            406,
            "not-supported",
            f"None of the accepted media types ({accept}) can be produced{also}; use application/fhir+json or application/fhir+xml",
        )
    return best[3]


def names_a_format(accept: str | None) -> bool:
    """Whether an Accept header names a FHIR JSON or XML type itself (not only ``*/*`` or
    ``application/*``, which leave the choice to the server)."""
    return accept is not None and any(is_fhir_media(part) for part in accept.split(","))


def is_xml_media(content_type: str) -> bool:
    """Whether a media type (parameters allowed) is one of the FHIR XML types."""
    return _media_type(content_type) in _XML_TYPES


def is_fhir_media(content_type: str) -> bool:
    """Whether a media type (parameters allowed) is one of the FHIR JSON or XML types."""
    media = _media_type(content_type)
    return media in _JSON_TYPES or media in _XML_TYPES


def format_from_content_type(content_type: str | None) -> str:
    if not content_type:
        return JSON
    media = _media_type(content_type)
    if media in _JSON_TYPES or media in _XML_TYPES:
        version = _other_fhir_version(content_type)
        if version is not None:
            raise FhirError.of(
                415, "not-supported", f"The body is FHIR version {version} (Content-Type); this server takes R4 (fhirVersion=4.0) only"
            )
        charset = _charset(content_type)
        if charset is not None and charset.lower() not in ("utf-8", "utf8"):
            # the IANA registrations of application/fhir+json and +xml: "if present, this must have
            # the value UTF-8"; read as UTF-8 anyway, such a body was taken for other characters
            raise FhirError.of(415, "not-supported", f"The body is declared charset={charset}; FHIR bodies are UTF-8 (charset=utf-8)")
        return JSON if media in _JSON_TYPES else XML
    raise FhirError.of(415, "not-supported", f"Content-Type '{media}' is not supported; send application/fhir+json or application/fhir+xml")


def parse_body(raw: bytes, fmt: str) -> Any:
    """Bytes of a request body to a JSON value (FhirError 400 when unparseable)."""
    if not raw.strip():
        raise FhirError.of(400, "structure", "The request body is empty")
    if fmt == JSON:
        try:
            return jsonio.loads_client(raw)
        except jsonio.DuplicateKey as exc:
            # FHIRPath of the repeated element when the body is a resource (Patient.name[0].family)
            raise FhirError.of(400, "structure", str(exc), expression_at(exc.value, (*exc.loc, exc.key))) from None
        except jsonio.JsonError as exc:
            raise FhirError.of(400, "structure", str(exc)) from None
    return xml_to_json(raw)


def xml_to_json(raw: bytes) -> dict[str, Any]:
    if _DTD.search(raw):
        raise FhirError.of(400, "security", "XML with a DOCTYPE or ENTITY declaration is not accepted")
    head = re.sub(rb"<\?.*?\?>|<!--.*?-->", b"", raw[:4096], flags=re.DOTALL)
    if not _ROOT_TAG.search(head):
        raise FhirError.of(400, "structure", "The XML body has no root element")
    from lxml import etree  # type: ignore[import-untyped]

    try:
        root = etree.fromstring(raw, xml_format.parser())
    except Exception as exc:  # noqa: BLE001 - lxml raises many kinds; all mean bad input
        raise FhirError.of(400, "structure", f"Invalid FHIR XML: {str(exc)[:500]}") from None
    try:
        return xml_format.xml_to_json(root)
    except RecursionError:  # libxml2 stops at 256 levels; kept as a 400 whatever the limit
        raise FhirError.of(400, "structure", "The XML is nested too deeply") from None


def json_to_xml(data: Any, *, pretty: bool = False) -> bytes:
    """Stored JSON (read with exact decimals, ``jsonio.loads``) as FHIR XML (indented with ``pretty``)."""
    try:
        return xml_format.json_to_xml(data, pretty=pretty)
    except xml_format.CannotWrite as exc:  # not for what was validated when stored; said, not a 500
        raise FhirError.of(406, "not-supported", f"This content cannot be rendered as XML: {str(exc)[:300]}") from None


def add_link_params(data: Any, params: list[tuple[str, str]]) -> None:
    """A Bundle's links with ``params`` added where they lack them; any other value as it is."""
    if not isinstance(data, dict) or data.get("resourceType") != "Bundle":
        return
    for link in data.get("link") or []:
        url = link.get("url") if isinstance(link, dict) else None
        if isinstance(url, str):
            present = {name for name, _ in parse_qsl(urlsplit(url).query, keep_blank_values=True)}
            extra = [(name, value) for name, value in params if name not in present]
            if extra:
                link["url"] = url + ("&" if "?" in url else "?") + urlencode(extra)
