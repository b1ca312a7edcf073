"""The parameters of a Bulk Data kick-off, read and checked (no database, no authorization).

Bulk Data Access 2.0 (export.html, "Query Parameters"): a server that does not support a
parameter, or some of its values, SHOULD answer with an error and an OperationOutcome, and MAY
process the request instead when it carries ``Prefer: handling=lenient``; a lenient request
that was processed SHOULD get an OperationOutcome for each ignored parameter in the manifest's
``error`` array. So every ignored parameter (or value) becomes a warning :class:`Issue` in
:attr:`Kickoff.ignored`, which the job stores and the worker writes into the error file.

Values that are wrong rather than unsupported (an unparsable or future ``_since``, a ``patient``
that names no Patient of this server, an unknown ``_outputFormat``) are 400 in either mode.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from fhir_server.bulk.exporter import patient_compartment
from fhir_server.errors import FhirError, Issue
from fhir_server.model.ids import is_valid_id
from fhir_server.model.parameters import parameter_list
from fhir_server.resource_types import is_resource_type
from fhir_server.search.parse import parse_query
from fhir_server.timeutil import datetime_range, to_instant
from fhir_server.urlcodec import media_type_value, parse_qsl

NDJSON = "application/fhir+ndjson"
OUTPUT_FORMATS = {"application/fhir+ndjson", "application/ndjson", "ndjson"}
#: includeAssociatedData values this server implements (CodeSystem include-associated-data)
LATEST_PROVENANCE = "LatestProvenanceResources"
RELEVANT_PROVENANCE = "RelevantProvenanceResources"
ASSOCIATED_DATA = (LATEST_PROVENANCE, RELEVANT_PROVENANCE)
SUPPORTED = {"_outputFormat", "_since", "_type", "includeAssociatedData", "patient", "_typeFilter", "_elements"}
#: search parameters that shape a result, not select it: no place in a ``_typeFilter``
_RESULT_PARAMS = frozenset({"_count", "_sort", "_include", "_revinclude", "_summary", "_elements", "_total", "_contained", "_cursor"})
#: ``,`` followed by a resource type and ``?`` starts the next query of a ``_typeFilter`` list (a
#: comma inside a query, ``status=final,amended``, does not)
_NEXT_QUERY = re.compile(r",(?=[A-Z][A-Za-z]+(?:\?|%3F|%3f))")
_ELEMENT = re.compile(r"^(?:([A-Z][A-Za-z]+)\.)?([a-z][A-Za-z0-9]*)$")
#: accepted and ignored without a word (the FHIR format parameters)
SILENT = {"_format", "_pretty"}


@dataclass(frozen=True)
class Param:
    """One kick-off parameter: from the query string (a string) or a Parameters body (its value[x])."""

    name: str
    value: Any
    #: the value[x] element of a body parameter (``valueReference``); None for the query string
    value_type: str | None = None
    #: where it was, for messages: ``Parameters.parameter[2]`` or ``the query string``
    where: str = "the query string"


@dataclass
class Kickoff:
    output_format: str = NDJSON
    since_us: int | None = None
    #: the valid ``_type`` values (None: no ``_type``)
    types: list[str] | None = None
    #: the ``patient`` parameter's ids, in order, each once (None: not given)
    patient_ids: list[str] | None = None
    #: the supported includeAssociatedData values asked for
    associated_data: tuple[str, ...] = ()
    #: what a lenient kick-off ignored (warnings for the manifest's error file)
    ignored: list[Issue] = field(default_factory=list)
    #: ``_typeFilter``: type -> the search queries of that type (OR-ed); None: not given
    type_filters: dict[str, list[str]] | None = None
    #: ``_elements``: ``Type.element`` / ``element`` items; None: not given
    elements: list[str] | None = None


def parameters(query: list[tuple[str, str]], body: Any) -> list[Param]:
    """The query string's parameters and those of a POST's Parameters body."""
    params = [Param(k, v) for k, v in query if k not in SILENT]
    if body is None:
        return params
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise FhirError.of(400, "invalid", "The body of a POST $export must be a Parameters resource")
    for index, p in enumerate(parameter_list(body)):
        where = f"Parameters.parameter[{index}]"
        if not isinstance(p.get("name"), str):
            raise FhirError.of(400, "invalid", f"{where} needs a name", where)
        values = [(k, v) for k, v in p.items() if k.startswith("value")]
        if len(values) != 1 or "resource" in p or "part" in p:
            raise FhirError.of(400, "invalid", f"Parameter '{p['name']}' ({where}) needs exactly one value[x]", where)
        if p["name"] not in SILENT:
            params.append(Param(p["name"], values[0][1], values[0][0], where))
    return params


def read(params: list[Param], level: str, base: str, now_us: int, lenient: bool) -> Kickoff:
    """Check ``params`` of a ``level`` (system, patient, group) kick-off; FhirError 400 on a
    wrong value, or on an unsupported one unless ``lenient``."""
    out = Kickoff()
    refused: list[Issue] = []

    def unsupported(text: str) -> None:
        (out.ignored if lenient else refused).append(Issue("warning" if lenient else "error", "not-supported", text))

    for p in params:
        if p.name not in SUPPORTED:
            unsupported(f"$export parameter {p.name}={_show(p.value)} is not supported by this server")
        elif p.name != "patient" and not isinstance(p.value, str):
            raise FhirError.of(400, "invalid", f"Parameter '{p.name}' ({p.where}) needs a string value[x]")
    patients = [p for p in params if p.name == "patient"]
    if patients and level == "system":
        unsupported("$export parameter patient does not apply to a system level export (use Patient/$export or Group/[id]/$export)")
        patients = []
    if any(p.value_type is None for p in patients):
        unsupported("$export parameter patient is accepted only in the Parameters body of a POST kick-off, not in the query string")
        patients = [p for p in patients if p.value_type is not None]
    if refused:
        hint = " (send 'Prefer: handling=lenient' to have them ignored)"
        raise FhirError(400, [Issue(i.severity, i.code, i.diagnostics + hint) for i in refused])

    out.output_format = _output_format([p.value for p in params if p.name == "_outputFormat"])
    out.since_us = _since([p.value for p in params if p.name == "_since"], now_us)
    out.types = _types([p.value for p in params if p.name == "_type"], level, lenient, out.ignored)
    out.associated_data = _associated([p.value for p in params if p.name == "includeAssociatedData"], lenient, out.ignored)
    if patients:
        out.patient_ids = list(dict.fromkeys(patient_id(p, base) for p in patients))
    out.type_filters = _type_filters([p.value for p in params if p.name == "_typeFilter"], level, out.types, lenient, out.ignored)
    out.elements = _elements([p.value for p in params if p.name == "_elements"], level, out.types)
    return out


def _exportable(level: str, types: list[str] | None) -> Callable[[str], bool]:
    """Whether a type can be in this export (``_type``, else every type the level exports)."""
    if types is not None:
        return types.__contains__
    members = patient_compartment()
    return is_resource_type if level == "system" else (lambda t: t == "Patient" or t in members)


def _type_filters(
    values: list[str], level: str, types: list[str] | None, lenient: bool, ignored: list[Issue]
) -> dict[str, list[str]] | None:
    """``_typeFilter`` (Bulk Data 2.0): ``[type]?[search parameters]`` queries, comma-separated or
    repeated, each percent-encoded or not; a type's queries are OR-ed, types without one are not
    filtered. A query is checked as a strict search: an unknown parameter, a bad value or a result
    parameter (``_count``, ``_include``...) is 400 in either mode, since ignoring it would export
    what the client filtered out. A type that is not in the export is 400, or ignored (and
    reported) with ``Prefer: handling=lenient``."""
    if not values:
        return None
    exportable = _exportable(level, types)
    out: dict[str, list[str]] = {}
    for value in values:
        for text in _NEXT_QUERY.split(value):
            query = text.strip() if "?" in text else unquote(text.strip())
            res_type, mark, search = query.partition("?")
            if not mark or not is_resource_type(res_type) or not search:
                raise FhirError.of(400, "invalid", f"_typeFilter '{_show(text)}' is not a search query [type]?[parameters]")
            if not exportable(res_type):
                message = f"$export parameter _typeFilter={_show(query)}: {res_type} is not a type of this export"
                if not lenient:
                    raise FhirError.of(400, "invalid", message + " (send 'Prefer: handling=lenient' to have it ignored)")
                ignored.append(Issue("warning", "not-supported", message + " (ignored)"))
                continue
            params = parse_qsl(search)
            shaping = sorted({n for n, _ in params if n.partition(":")[0] in _RESULT_PARAMS})
            if shaping:
                raise FhirError.of(400, "invalid", f"_typeFilter '{_show(query)}': {', '.join(shaping)} cannot filter an export")
            try:
                parse_query(res_type, params, strict=True)
            except FhirError as exc:
                raise FhirError(
                    exc.status, [Issue(i.severity, i.code, f"_typeFilter '{_show(query)}': {i.diagnostics}") for i in exc.issues]
                ) from None
            out.setdefault(res_type, []).append(search)
    return out or None


def _elements(values: list[str], level: str, types: list[str] | None) -> list[str] | None:
    """``_elements``: ``element`` or ``Type.element`` (a top-level element), comma-separated or
    repeated; a ``Type.`` that is not a type of the export is 400."""
    items = list(dict.fromkeys(x.strip() for v in values for x in v.split(",") if x.strip()))
    if not items:
        return None
    exportable = _exportable(level, types)
    for item in items:
        match = _ELEMENT.match(item)
        if match is None:
            raise FhirError.of(400, "invalid", f"_elements: '{_show(item)}' is not element or [type].element (top-level elements only)")
        if match.group(1) is not None and (not is_resource_type(match.group(1)) or not exportable(match.group(1))):
            raise FhirError.of(400, "invalid", f"_elements: {match.group(1)} is not a type of this export")
    return items


def _show(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 200 else text[:200] + "..."


def _output_format(values: list[str]) -> str:
    if len(values) > 1:
        raise FhirError.of(400, "invalid", "_outputFormat may appear only once")
    output_format = media_type_value(values[0]) if values else NDJSON
    if output_format not in OUTPUT_FORMATS:
        raise FhirError.of(400, "not-supported", f"_outputFormat '{output_format}' is not supported: use application/fhir+ndjson")
    return output_format


def _since(values: list[str], now_us: int) -> int | None:
    if len(values) > 1:
        raise FhirError.of(400, "invalid", "_since may appear only once")
    if not values:
        return None
    try:
        since_us = datetime_range(values[0].strip())[0]
    except ValueError as exc:
        raise FhirError.of(400, "invalid", f"_since: {exc}") from None
    # the export holds resources changed after _since and up to its transaction time (the IG's
    # transactionTime), which is later than now: a _since after now can select nothing, so it is
    # a client mistake (a clock or time zone off) rather than a request for an empty export
    if since_us > now_us:
        raise FhirError.of(
            400,
            "invalid",
            f"_since {values[0].strip()} is in the future (the server's time is {to_instant(now_us)}): no resource can match",
        )
    return since_us


def _types(values: list[str], level: str, lenient: bool, ignored: list[Issue]) -> list[str] | None:
    requested = [t.strip() for v in values for t in v.split(",") if t.strip()]
    if not requested:
        return None
    members = patient_compartment()

    def allowed(t: str) -> bool:
        return is_resource_type(t) if level == "system" else (t == "Patient" or t in members)

    bad = sorted({t for t in requested if not allowed(t)})
    where = "resource types" if level == "system" else "types of the Patient compartment"
    if bad and not lenient:
        raise FhirError.of(400, "invalid", f"_type: {', '.join(bad)} are not {where}")
    if bad:
        ignored.append(Issue("warning", "not-supported", f"$export parameter _type: {', '.join(bad)} ignored: not {where}"))
    types = list(dict.fromkeys(t for t in requested if allowed(t)))
    if not types:
        raise FhirError.of(400, "invalid", "_type names no type this export can return")
    return types


def _associated(values: list[str], lenient: bool, ignored: list[Issue]) -> tuple[str, ...]:
    asked = list(dict.fromkeys(x.strip() for v in values for x in v.split(",") if x.strip()))
    bad = [x for x in asked if x not in ASSOCIATED_DATA]
    if bad and not lenient:
        raise FhirError.of(
            400,
            "not-supported",
            f"includeAssociatedData value(s) not supported: {', '.join(bad)} (supported: {', '.join(ASSOCIATED_DATA)}; "
            "send 'Prefer: handling=lenient' to have them ignored)",
        )
    for x in bad:
        ignored.append(Issue("warning", "not-supported", f"$export parameter includeAssociatedData: value {x} ignored: not supported"))
    return tuple(x for x in ASSOCIATED_DATA if x in asked)


def patient_id(p: Param, base: str) -> str:
    """The Patient id a ``patient`` valueReference names: ``Patient/[id]`` or an absolute URL
    under this server's ``base`` (a version, ``/_history/n``, is ignored); 400 otherwise."""
    reference = p.value.get("reference") if p.value_type == "valueReference" and isinstance(p.value, dict) else None
    if not isinstance(reference, str):
        raise FhirError.of(400, "invalid", f"patient ({p.where}) must be a valueReference with a literal reference Patient/[id]", p.where)
    path = reference
    if "://" in reference:
        prefix = base.rstrip("/") + "/"
        if not reference.startswith(prefix):
            raise FhirError.of(400, "invalid", f"patient ({p.where}): {reference} is not a Patient of this server", p.where)
        path = reference[len(prefix) :]
    parts = path.split("/")
    if len(parts) == 4 and parts[2] == "_history":
        parts = parts[:2]
    if len(parts) != 2 or parts[0] != "Patient" or not is_valid_id(parts[1]):
        raise FhirError.of(400, "invalid", f"patient ({p.where}): '{_show(reference)}' is not a reference Patient/[id]", p.where)
    return parts[1]
