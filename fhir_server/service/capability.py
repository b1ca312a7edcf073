"""The CapabilityStatement, generated from the registry that also drives the routes."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

from fhir_server import __version__, jsonio, resource_types
from fhir_server.auth.smart import capability_security
from fhir_server.errors import FhirError
from fhir_server.operations import catalog  # noqa: F401  (registers the operations)
from fhir_server.operations.registry import operations_for
from fhir_server.search import parameters as search_parameters
from fhir_server.search.compartment import compartment_codes, definition_url
from fhir_server.search.subsetting import for_read
from fhir_server.subscriptions import capability as subscription_capability
from fhir_server.timeutil import now_us, to_instant
from terminology.capabilities import terminology_capabilities
from terminology.engine import TerminologyEngine

SOFTWARE_NAME = "fhir-server-id"
#: the IG CapabilityStatements this server implements (Bulk Data export: fhir_server/bulk, docs/bulk.md)
INSTANTIATES = ["http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"]


#: what a developer integrating against the CapabilityStatement needs to know of Binary
BINARY_NATIVE = (
    "Native content (binary.html#rest): a create or update whose Content-Type is not a FHIR format stores the bytes "
    "as Binary.data with that contentType (X-Security-Context: securityContext); a read or vread whose Accept names "
    "no FHIR format answers the bytes with their contentType."
)


def capability_statement(base: str, *, conditional_delete_multiple: bool = False, token_auth: bool = False) -> dict[str, Any]:
    resources = []
    for res_type in resource_types.RESOURCE_TYPES:
        if res_type in resource_types.SERVER_OWNED:
            resources.append(_server_owned(res_type))
            continue
        resources.append(
            _without_empty_lists(
                {
                    "extension": subscription_capability.topic_extensions(res_type),
                    "type": res_type,
                    "profile": f"http://hl7.org/fhir/StructureDefinition/{res_type}",
                    **({"documentation": BINARY_NATIVE} if res_type == "Binary" else {}),
                    "interaction": [{"code": code} for code in resource_types.interactions_for(res_type)],
                    "versioning": "versioned-update",
                    "readHistory": True,
                    "updateCreate": True,
                    "conditionalCreate": True,
                    "conditionalRead": "full-support",
                    "conditionalUpdate": True,
                    "conditionalDelete": "multiple" if conditional_delete_multiple else "single",
                    "searchInclude": search_parameters.search_includes(res_type),
                    "searchRevInclude": search_parameters.search_revincludes(res_type),
                    "searchParam": search_parameters.capability_search_params(res_type),
                    "operation": _operations(res_type),
                    **subscription_capability.resource_overrides(res_type),
                }
            )
        )
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": to_instant(now_us())[:10],
        "publisher": "fhir-server-id contributors",
        "kind": "instance",
        "instantiates": [*INSTANTIATES, subscription_capability.BACKPORT_SERVER],
        "software": {"name": SOFTWARE_NAME, "version": __version__},
        "implementation": {
            "description": "FHIR R4 interoperability server for Indonesian healthcare (SIMRS, Puskesmas, SATUSEHAT)",
            "url": base,
        },
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "application/fhir+xml", "json", "xml"],
        # FHIRPath Patch (Parameters, JSON or XML), JSON Patch, JSON Merge Patch; plain application/json
        # is a merge patch (an object) or a JSON Patch (an array), see service/patch.py
        "patchFormat": [
            "application/fhir+json",
            "application/fhir+xml",
            "application/json-patch+json",
            "application/merge-patch+json",
            "application/json",
        ],
        "rest": [
            {
                "extension": subscription_capability.rest_extensions(base),
                "mode": "server",
                **({"security": capability_security(f"{base}/auth/token")} if token_auth else {}),
                "resource": resources,
                "interaction": [{"code": code} for code in resource_types.SYSTEM_INTERACTIONS],
                "operation": _operations(None),
                "searchParam": [
                    {"name": p["name"], "definition": p["definition"], "type": p["type"]}
                    for p in search_parameters.capability_search_params("Resource")
                ],
                # searches in a compartment: GET [base]/Patient/1/Encounter, .../* (search/compartment.py)
                "compartment": [definition_url(code) for code in compartment_codes()],
            }
        ],
    }


def _without_empty_lists(entry: dict[str, Any]) -> dict[str, Any]:
    """An element without its empty lists: ``[]`` is not FHIR JSON (a type no search parameter
    refers to, such as Parameters, has no ``searchRevInclude``)."""
    return {name: value for name, value in entry.items() if value != []}


def _server_owned(res_type: str) -> dict[str, Any]:
    """AuditEvent: written by the server, read and searched from the audit trail."""
    from fhir_server.audit.search import capability_search_params as audit_params

    return {
        "type": res_type,
        "profile": f"http://hl7.org/fhir/StructureDefinition/{res_type}",
        "documentation": "Written by the server for every request (docs/audit.md); clients can only read and search.",
        "interaction": [{"code": code} for code in resource_types.interactions_for(res_type)],
        "readHistory": False,
        "updateCreate": False,
        "searchParam": audit_params(),
    }


def _operations(res_type: str | None) -> list[dict[str, str]]:
    return [{"name": op.name, "definition": op.canonical} for op in operations_for(res_type)]


@lru_cache(maxsize=16)
def capability_bytes(base: str, conditional_delete_multiple: bool = False, token_auth: bool = False) -> bytes:
    return jsonio.dumps(capability_statement(base, conditional_delete_multiple=conditional_delete_multiple, token_auth=token_auth))


#: ``GET metadata?mode=``: full and normative both answer the whole CapabilityStatement (this
#: server does not mark which parts of it are normative); terminology, the TerminologyCapabilities
METADATA_MODES = ("full", "normative", "terminology")


def metadata(
    base: str, params: list[tuple[str, str]], capability: Callable[[str], bytes], terminology: Callable[[], TerminologyEngine]
) -> bytes:
    """The answer to ``GET [base]/metadata`` with its query ``params`` (http.html#capabilities);
    ``terminology``: the database's terminology engine (``mode=terminology``)."""
    modes = [v for k, v in params if k == "mode" and v]  # an empty value asks for nothing (docs/interop.md)
    if len(modes) > 1:
        raise FhirError.of(400, "invalid", "mode may be given once")
    mode = modes[0] if modes else "full"
    if mode not in METADATA_MODES:
        raise FhirError.of(400, "invalid", f"Unknown metadata mode '{mode}': use one of {', '.join(METADATA_MODES)}")
    subsetting = for_read(params)  # _summary / _elements, as on a read (search/subsetting.py)
    if mode == "terminology":
        return subsetting.apply(jsonio.dumps(terminology_capability(base, terminology())), "TerminologyCapabilities")
    return subsetting.apply(capability(base), "CapabilityStatement")


def terminology_capability(base: str, engine: TerminologyEngine) -> dict[str, Any]:
    """The TerminologyCapabilities of ``engine`` (the database's: it lists the stored CodeSystems)."""
    software = {"name": SOFTWARE_NAME, "version": __version__}
    return terminology_capabilities(engine, base=base, date=to_instant(now_us())[:10], software=software)
