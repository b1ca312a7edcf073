"""The operation registry.

An operation is one handler function plus one :class:`Operation` entry here;
the generic ``$`` routes dispatch through :func:`find` and the
CapabilityStatement lists :data:`OPERATIONS`, so neither can drift from the other.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fhir_server.errors import FhirError
from fhir_server.model.parameters import parameter_list

if TYPE_CHECKING:  # pragma: no cover
    from fhir_server.service.access import Principal
    from fhir_server.service.context import Services, WriteRunner

DEFINITIONS = Path(__file__).resolve().parent / "definitions"


@dataclass(frozen=True)
class OperationCall:
    base: str
    method: str
    res_type: str | None
    res_id: str | None
    #: query-string parameters (all of them for GET; POST may add a body)
    query: list[tuple[str, str]]
    #: the parsed JSON body of a POST (a Parameters resource or, for $validate, any resource)
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    #: who calls: an operation checks every type it writes and every resource that leaves
    principal: Principal = field(default_factory=lambda: _open())
    #: the one write path (``Pipeline.writer``): every write of an operation goes through it
    write: WriteRunner | None = None

    def writer(self) -> WriteRunner:
        if self.write is None:
            raise RuntimeError("this operation call was built without the pipeline's write path")
        return self.write


def _open() -> Principal:
    from fhir_server.service.access import OPEN

    return OPEN


@dataclass(frozen=True)
class OperationResult:
    body: bytes | None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


#: a handler may be a coroutine function (operations that write await ``call.writer()``)
Handler = Callable[["Services", OperationCall], "OperationResult | Awaitable[OperationResult]"]


@dataclass(frozen=True)
class Operation:
    name: str
    #: file stem in definitions/ (the OperationDefinition id)
    definition: str
    handler: Handler
    #: resource types it applies to; None = every type
    types: tuple[str, ...] | None
    system: bool = False
    type_level: bool = False
    instance: bool = False
    #: GET is allowed only for operations that change nothing
    affects_state: bool = False
    #: tells no more than the CapabilityStatement (``$versions``): any authenticated client, no scope
    discovery: bool = False

    @property
    def canonical(self) -> str:
        return definition(self.definition)["url"]


@cache
def definition(stem: str) -> dict[str, Any]:
    return json.loads((DEFINITIONS / f"{stem}.json").read_text(encoding="utf-8"))


OPERATIONS: list[Operation] = []


def register(op: Operation) -> None:
    OPERATIONS.append(op)


def find(name: str, res_type: str | None, instance: bool) -> Operation:
    for op in OPERATIONS:
        if op.name != name:
            continue
        if res_type is None and op.system:
            return op
        if res_type is not None and (op.types is None or res_type in op.types) and (op.instance if instance else op.type_level):
            return op
    where = "the system" if res_type is None else (f"a {res_type} instance" if instance else f"the {res_type} type")
    raise FhirError.of(404, "not-supported", f"Operation ${name} is not supported on {where}{_elsewhere(name, res_type, instance)}")


def _elsewhere(name: str, res_type: str | None, instance: bool) -> str:
    """Where the operation asked for at the wrong level is served, for the error's text."""
    if res_type is None:
        return ""
    for op in OPERATIONS:
        if op.name == name and (op.types is None or res_type in op.types) and (op.type_level if instance else op.instance):
            if instance:
                return f"; it is on the type: {res_type}/${name}"
            # Patient-everything's definition lets a server refuse "all patients" at the type level
            bulk = " (every resource of every patient: the Bulk Data $export)" if name == "everything" else ""
            return f"; it is on an instance: {res_type}/[id]/${name}{bulk}"
    return ""


def operations_for(res_type: str | None) -> list[Operation]:
    """Operations to list on a CapabilityStatement resource entry (None: the system level)."""
    if res_type is None:
        return [op for op in OPERATIONS if op.system]
    return [op for op in OPERATIONS if (op.type_level or op.instance) and (op.types is None or res_type in op.types)]


def parameter_values(call: OperationCall, name: str) -> list[Any]:
    """Values of parameter ``name`` from the query string and a Parameters body (value[x] or resource)."""
    values: list[Any] = [v for k, v in call.query if k == name]
    body = call.body
    if isinstance(body, dict) and body.get("resourceType") == "Parameters":
        for p in parameter_list(body):
            if p.get("name") == name:
                if "resource" in p:
                    values.append(p["resource"])
                else:
                    values.extend(v for k, v in p.items() if k.startswith("value"))
                if "part" in p:
                    values.append(p)
    return values


def one_parameter(call: OperationCall, name: str) -> Any:
    values = parameter_values(call, name)
    if len(values) > 1:
        raise FhirError.of(400, "invalid", f"Parameter '{name}' may appear only once")
    return values[0] if values else None
