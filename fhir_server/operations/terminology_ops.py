"""$lookup, $validate-code, $subsumes, $expand and $translate, served by the terminology engine.

The engine (terminology/) holds the packaged code systems, value sets and
concept maps in memory, the 91,599 Kemendagri region codes in an index. The
database stays the source of truth for what clients add: each call gets the
database's engine, which holds what clients stored as of the last commit, whichever
worker wrote it (storage/stored_terminology.py); at instance level the stored
resource itself is handed to the engine.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fhir_server import jsonio
from fhir_server.operations.registry import Operation, OperationCall, OperationResult, parameter_values, register
from terminology import operations as adapters

if TYPE_CHECKING:  # pragma: no cover
    from fhir_server.service.context import Services

Adapter = Callable[..., dict[str, Any]]


def _handler(adapter: Adapter) -> Callable[[Services, OperationCall], OperationResult]:
    def handle(state: Services, call: OperationCall) -> OperationResult:
        res_type = call.res_type or ""
        instance = None
        if call.res_id is not None:
            instance = jsonio.loads(state.resources.read(res_type, call.res_id).body or b"{}")

        def values(name: str) -> list[Any]:
            return parameter_values(call, name)

        return OperationResult(jsonio.dumps(adapter(state.terminology(), values, instance)))

    return handle


register(Operation("lookup", "CodeSystem-lookup", _handler(adapters.lookup), ("CodeSystem",), type_level=True, instance=True))
register(
    Operation(
        "validate-code", "CodeSystem-validate-code", _handler(adapters.validate_code_cs), ("CodeSystem",), type_level=True, instance=True
    )
)
register(Operation("subsumes", "CodeSystem-subsumes", _handler(adapters.subsumes), ("CodeSystem",), type_level=True, instance=True))
register(Operation("expand", "ValueSet-expand", _handler(adapters.expand), ("ValueSet",), type_level=True, instance=True))
register(
    Operation("validate-code", "ValueSet-validate-code", _handler(adapters.validate_code_vs), ("ValueSet",), type_level=True, instance=True)
)
register(Operation("translate", "ConceptMap-translate", _handler(adapters.translate), ("ConceptMap",), type_level=True, instance=True))
