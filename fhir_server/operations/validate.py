"""$validate (http://hl7.org/fhir/R4/resource-operation-validate.html).

Always answers 200 with an OperationOutcome: the outcome itself says whether
the resource is valid; errors of the request (no resource, bad mode) are 400.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fhir_server import jsonio
from fhir_server.errors import FhirError, Issue, operation_outcome
from fhir_server.model.validate import validate_resource
from fhir_server.operations.registry import Operation, OperationCall, OperationResult, one_parameter, register

if TYPE_CHECKING:  # pragma: no cover
    from fhir_server.app import ServerState

MODES = ("create", "update", "delete")


def validate(state: "ServerState", call: OperationCall) -> OperationResult:
    mode = one_parameter(call, "mode")
    if mode is not None and mode not in MODES:
        raise FhirError.of(400, "invalid", f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    body = call.body
    resource = one_parameter(call, "resource") if isinstance(body, dict) and body.get("resourceType") == "Parameters" else body
    issues: list[Issue] = []
    if mode == "delete":
        if call.res_id is None:
            raise FhirError.of(400, "invalid", "mode=delete validates an existing resource: call [type]/[id]/$validate")
        state.resources.read(call.res_type or "", call.res_id)  # 404/410 when there is nothing to delete
        return _outcome(issues)
    if not isinstance(resource, dict):
        raise FhirError.of(400, "required", "$validate needs a resource (the body, or a 'resource' parameter)")
    if call.res_type and resource.get("resourceType") != call.res_type:
        raise FhirError.of(400, "invalid", f"The resource is a {resource.get('resourceType')!r}, not a {call.res_type}")
    if mode == "update" or call.res_id is not None:
        if call.res_id is not None and resource.get("id") not in (None, call.res_id):
            issues.append(Issue("error", "invalid", f"The resource id must be {call.res_id}", f"{call.res_type}.id"))
        elif mode == "update" and not resource.get("id"):
            issues.append(Issue("error", "required", "mode=update needs a resource with an id", f"{call.res_type}.id"))
    profile = one_parameter(call, "profile")
    if profile is not None and profile != f"http://hl7.org/fhir/StructureDefinition/{resource.get('resourceType')}":
        issues.append(Issue("warning", "not-supported", f"Profile {profile} is not known here; validated against the base R4 definition"))
    issues.extend(validate_resource(resource, r4b_model=state.settings.r4b_model_check))
    return _outcome(issues)


def _outcome(issues: list[Issue]) -> OperationResult:
    return OperationResult(jsonio.dumps(operation_outcome(issues)))


register(Operation("validate", "Resource-validate", validate, None, type_level=True, instance=True))
