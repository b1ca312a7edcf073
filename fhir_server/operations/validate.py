"""$validate (http://hl7.org/fhir/R4/resource-operation-validate.html).

Always answers 200 with an OperationOutcome: the outcome itself says whether
the resource is valid; errors of the request (no resource, bad mode) are 400.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fhir_server import jsonio
from fhir_server.errors import FhirError, Issue, operation_outcome
from fhir_server.operations.registry import Operation, OperationCall, OperationResult, one_parameter, register
from fhir_server.resource_types import is_resource_type

if TYPE_CHECKING:  # pragma: no cover
    from fhir_server.service.context import Services

MODES = ("create", "update", "delete")


def validate(state: Services, call: OperationCall) -> OperationResult:
    mode = one_parameter(call, "mode")
    if mode is not None and mode not in MODES:
        raise FhirError.of(400, "invalid", f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    body = call.body
    resource = one_parameter(call, "resource") if isinstance(body, dict) and body.get("resourceType") == "Parameters" else body
    if mode == "delete":
        if call.res_id is None:
            raise FhirError.of(400, "invalid", "mode=delete validates an existing resource: call [type]/[id]/$validate")
        state.resources.read(call.res_type or "", call.res_id)  # 404/410 when there is nothing to delete
        return _outcome([])
    if not isinstance(resource, dict):
        raise FhirError.of(400, "required", "$validate needs a resource (the body, or a 'resource' parameter)")
    res_type = call.res_type or resource.get("resourceType")
    if not isinstance(res_type, str) or not is_resource_type(res_type):
        raise FhirError.of(400, "invalid", f"The resource's resourceType ({resource.get('resourceType')!r}) is not an R4 resource type")
    if call.res_type and resource.get("resourceType") != call.res_type:
        raise FhirError.of(400, "invalid", f"The resource is a {resource.get('resourceType')!r}, not a {call.res_type}")
    issues: list[Issue] = []
    res_id = call.res_id
    if mode == "update" or res_id is not None:
        if res_id is not None and resource.get("id") not in (None, res_id):
            issues.append(Issue("error", "invalid", f"The resource id must be {res_id}", f"{res_type}.id"))
        elif mode == "update" and not resource.get("id"):
            issues.append(Issue("error", "required", "mode=update needs a resource with an id", f"{res_type}.id"))
    profile = one_parameter(call, "profile")
    if profile is not None and profile != f"http://hl7.org/fhir/StructureDefinition/{resource.get('resourceType')}":
        issues.append(Issue("warning", "not-supported", f"Profile {profile} is not known here; validated against the base R4 definition"))
    # exactly the checks a create or update runs (structure, model, bindings, administrativeCode)
    issues.extend(state.resources.write_issues(res_type, resource, res_id or resource.get("id")))
    return _outcome(issues)


def _outcome(issues: list[Issue]) -> OperationResult:
    return OperationResult(jsonio.dumps(operation_outcome(issues)))


register(Operation("validate", "Resource-validate", validate, None, type_level=True, instance=True))
# the system level is ours (R4 defines $validate on types and instances): its own definition
register(Operation("validate", "validate", validate, None, system=True))
