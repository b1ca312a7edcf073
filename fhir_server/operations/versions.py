"""``[base]/$versions`` (http://hl7.org/fhir/R4/capabilitystatement-operation-versions.html).

The FHIR versions this endpoint serves, as major.minor codes, and the one it uses when a request
names none (versioning.html#mt-version): R4 only, so ``4.0`` both times. The media-type check
(``api/formats``) refuses any other ``fhirVersion`` with 406/415, so this answer stays true.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fhir_server import jsonio
from fhir_server.operations.registry import Operation, OperationCall, OperationResult, register

if TYPE_CHECKING:  # pragma: no cover
    from fhir_server.service.context import Services

#: CapabilityStatement.fhirVersion is 4.0.1; $versions speaks in major.minor
SERVED, DEFAULT = ("4.0",), "4.0"

_ANSWER = jsonio.dumps(
    {
        "resourceType": "Parameters",
        "parameter": [*({"name": "version", "valueCode": v} for v in SERVED), {"name": "default", "valueCode": DEFAULT}],
    }
)


def versions(state: Services, call: OperationCall) -> OperationResult:
    return OperationResult(_ANSWER)


register(Operation("versions", "CapabilityStatement-versions", versions, None, system=True, discovery=True))
