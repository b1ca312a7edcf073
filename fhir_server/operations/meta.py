"""$meta, $meta-add and $meta-delete (http://hl7.org/fhir/R4/resource-operations.html#meta).

Tags, profiles and security labels are "meta" of a version: adding or deleting
them rewrites the current version in place rather than making a new one (the
spec's intent, and HAPI's behaviour); the search index follows.

On an instance the answer is the resource's meta as stored ("the meta for the resource": its
versionId and lastUpdated too), so it is never empty. At type and system level it is the
profiles, tags and security labels in use; when there are none, the Parameters holds no
``return``: an empty Meta (``{}``) is not FHIR JSON (the server's own $validate refused it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fhir_server import jsonio
from fhir_server.errors import FhirError
from fhir_server.model.parameters import parameters
from fhir_server.operations.registry import Operation, OperationCall, OperationResult, one_parameter, register

if TYPE_CHECKING:  # pragma: no cover
    from fhir_server.service.context import Services

KEYS = ("profile", "tag", "security")


def _result(meta: dict[str, Any]) -> OperationResult:
    return OperationResult(jsonio.dumps(parameters([{"name": "return", "valueMeta": meta}] if meta else [])))


def meta(state: Services, call: OperationCall) -> OperationResult:
    if call.res_id is not None:
        stored = state.resources.read(call.res_type or "", call.res_id)
        return _result(jsonio.loads(stored.body or b"{}").get("meta") or {})
    out = state.search.meta_summary(call.res_type)
    return _result({k: out[k] for k in KEYS if k in out})


def _coding_key(c: Any) -> tuple[Any, Any]:
    return (c.get("system"), c.get("code")) if isinstance(c, dict) else (None, None)


async def _change(state: Services, call: OperationCall, add: bool) -> OperationResult:
    change = one_parameter(call, "meta")
    if not isinstance(change, dict):
        raise FhirError.of(400, "required", "The 'meta' parameter (valueMeta) is required")
    res_type, res_id = call.res_type or "", call.res_id or ""

    def edit(meta_now: dict[str, Any]) -> None:
        for key in KEYS:
            items = change.get(key) or []
            existing = meta_now.get(key) or []
            same = (lambda a, b: a == b) if key == "profile" else (lambda a, b: _coding_key(a) == _coding_key(b))
            if add:
                merged = existing + [i for i in items if not any(same(i, e) for e in existing)]
            else:
                merged = [e for e in existing if not any(same(i, e) for i in items)]
            if merged:
                meta_now[key] = merged
            else:
                meta_now.pop(key, None)

    meta_now = await call.writer()(lambda conn: state.resources.change_meta_in(conn, res_type, res_id, edit))
    return _result(meta_now)


async def meta_add(state: Services, call: OperationCall) -> OperationResult:
    return await _change(state, call, add=True)


async def meta_delete(state: Services, call: OperationCall) -> OperationResult:
    return await _change(state, call, add=False)


register(Operation("meta", "Resource-meta", meta, None, system=True, type_level=True, instance=True))
register(Operation("meta-add", "Resource-meta-add", meta_add, None, instance=True, affects_state=True))
register(Operation("meta-delete", "Resource-meta-delete", meta_delete, None, instance=True, affects_state=True))
