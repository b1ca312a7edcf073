"""Lists ``$export`` in the operation registry (CapabilityStatement, seeded OperationDefinition).

The requests themselves are served by ``fhir_server.bulk.routes``, declared before the
generic ``$operation`` routes; the handler here answers only if that router is missing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fhir_server.errors import FhirError
from fhir_server.operations.registry import Operation, OperationCall, OperationResult, register

if TYPE_CHECKING:  # pragma: no cover
    from fhir_server.service.context import Services


def _not_routed(state: Services, call: OperationCall) -> OperationResult:
    raise FhirError.of(404, "not-supported", "$export is served by the Bulk Data routes, which are not installed")


register(Operation("export", "export", _not_routed, None, system=True))
# one OperationDefinition per level, as the Bulk Data IG defines them (each canonical is the IG's)
register(Operation("export", "patient-export", _not_routed, ("Patient",), type_level=True))
register(Operation("export", "group-export", _not_routed, ("Group",), instance=True))
