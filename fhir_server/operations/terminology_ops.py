"""$lookup, $validate-code, $subsumes, $expand and $translate, served by the terminology engine.

The engine (terminology/) holds the packaged code systems, value sets and
concept maps in memory, the 91,599 Kemendagri region codes in an index. The
database stays the source of truth for what clients add: at instance level
the stored resource is handed to the engine, and a canonical URL the engine
does not know is looked up among the stored resources of that type.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fhir_server import jsonio
from fhir_server.errors import FhirError
from fhir_server.operations.registry import Operation, OperationCall, OperationResult, parameter_values, register
from terminology import operations as adapters
from terminology.engine import default_engine

if TYPE_CHECKING:  # pragma: no cover
    from fhir_server.service.context import Services

Adapter = Callable[..., dict[str, Any]]

#: which parameter names a stored resource of the operation's type by canonical URL
_URL_PARAMS = {"CodeSystem": ("system", "url"), "ValueSet": ("url",), "ConceptMap": ("url",)}


def _stored_by_url(state: Services, res_type: str, url: str) -> dict[str, Any] | None:
    found = state.search.run("", res_type, [("url", url.split("|")[0]), ("_count", "1")], strict=True)
    return jsonio.loads(found.matches[0][2]) if found.matches else None


def _handler(adapter: Adapter) -> Callable[[Services, OperationCall], OperationResult]:
    def handle(state: Services, call: OperationCall) -> OperationResult:
        res_type = call.res_type or ""
        instance = None
        if call.res_id is not None:
            instance = jsonio.loads(state.resources.read(res_type, call.res_id).body or b"{}")

        def values(name: str) -> list[Any]:
            return parameter_values(call, name)

        engine = default_engine()
        try:
            result = adapter(engine, values, instance)
        except FhirError as exc:
            if exc.status != 404 or instance is not None:
                raise
            # not among the packaged content: a resource a client stored (perhaps via another worker)
            url = next((v for n in _URL_PARAMS.get(res_type, ()) for v in values(n) if isinstance(v, str)), None)
            stored = _stored_by_url(state, res_type, url) if url else None
            if stored is None:
                raise
            result = adapter(engine, values, stored)
        return OperationResult(jsonio.dumps(result))

    return handle


TERMINOLOGY_TYPES = ("CodeSystem", "ValueSet", "ConceptMap")


def sync_engine(res_type: str, resource: dict[str, Any] | None, previous: bytes | None) -> None:
    """Keep this worker's engine in step with a committed write of a CodeSystem, ValueSet or ConceptMap.

    Other workers learn of it through the stored-resource fallback above.
    """
    registry = default_engine().registry
    if resource is not None and isinstance(resource.get("url"), str):
        registry.add(resource)
    elif resource is None and previous is not None:
        old = jsonio.loads(previous)
        if isinstance(old.get("url"), str):
            registry.remove(res_type, old["url"], old.get("version"))


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
