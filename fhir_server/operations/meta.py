"""$meta, $meta-add and $meta-delete (http://hl7.org/fhir/R4/resource-operations.html#meta).

Tags, profiles and security labels are "meta" of a version: adding or deleting
them rewrites the current version in place rather than making a new one (the
spec's intent, and HAPI's behaviour); the search index follows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from fhir_server import jsonio
from fhir_server.errors import FhirError
from fhir_server.operations.registry import Operation, OperationCall, OperationResult, one_parameter, register
from fhir_server.storage import repository as repo
from fhir_server.storage.index_tables import idx_token, idx_uri
from fhir_server.storage.tables import resources

if TYPE_CHECKING:  # pragma: no cover
    from fhir_server.app import ServerState

KEYS = ("profile", "tag", "security")


def _subset(meta: dict[str, Any] | None) -> dict[str, Any]:
    return {k: meta[k] for k in KEYS if meta and meta.get(k)}


def _result(meta: dict[str, Any]) -> OperationResult:
    return OperationResult(jsonio.dumps({"resourceType": "Parameters", "parameter": [{"name": "return", "valueMeta": meta}]}))


def meta(state: "ServerState", call: OperationCall) -> OperationResult:
    if call.res_id is not None:
        stored = state.resources.read(call.res_type or "", call.res_id)
        return _result(_subset(jsonio.loads(stored.body or b"{}").get("meta")))
    r = resources
    type_filter = [r.c.res_type == call.res_type] if call.res_type else []
    out: dict[str, Any] = {}
    with state.db.read() as conn:
        profiles = conn.execute(
            sa.select(idx_uri.c.value).distinct().join(r, r.c.pk == idx_uri.c.resource_pk)
            .where(idx_uri.c.param == "_profile", r.c.deleted == sa.false(), *type_filter).order_by(idx_uri.c.value)
        ).scalars().all()
        for key, param in (("tag", "_tag"), ("security", "_security")):
            rows = conn.execute(
                sa.select(idx_token.c.system, idx_token.c.code).distinct().join(r, r.c.pk == idx_token.c.resource_pk)
                .where(idx_token.c.param == param, r.c.deleted == sa.false(), *type_filter)
                .order_by(idx_token.c.system, idx_token.c.code)
            ).all()
            if rows:
                out[key] = [{k: v for k, v in (("system", s), ("code", c)) if v is not None} for s, c in rows]
    if profiles:
        out["profile"] = list(profiles)
    return _result({k: out[k] for k in KEYS if k in out})


def _coding_key(c: Any) -> tuple[Any, Any]:
    return (c.get("system"), c.get("code")) if isinstance(c, dict) else (None, None)


def _change(state: "ServerState", call: OperationCall, add: bool) -> OperationResult:
    change = one_parameter(call, "meta")
    if not isinstance(change, dict):
        raise FhirError.of(400, "required", "The 'meta' parameter (valueMeta) is required")
    res_type, res_id = call.res_type or "", call.res_id or ""
    with state.db.write() as conn:
        current = repo.get_current(conn, res_type, res_id, for_update=True)
        if current is None or current.deleted or current.body is None:
            raise FhirError.of(404 if current is None else 410, "not-found", f"{res_type}/{res_id} is not available")
        resource = jsonio.loads(current.body)
        meta_now = resource.setdefault("meta", {})
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
        state.resources.validate(resource)
        repo.overwrite_body(conn, current.pk, res_type, res_id, current.version, jsonio.dumps(resource))
        state.resources.indexer(conn, current.pk, resource)
    return _result(_subset(meta_now))


def meta_add(state: "ServerState", call: OperationCall) -> OperationResult:
    return _change(state, call, add=True)


def meta_delete(state: "ServerState", call: OperationCall) -> OperationResult:
    return _change(state, call, add=False)


register(Operation("meta", "Resource-meta", meta, None, system=True, type_level=True, instance=True))
register(Operation("meta-add", "Resource-meta-add", meta_add, None, instance=True, affects_state=True))
register(Operation("meta-delete", "Resource-meta-delete", meta_delete, None, instance=True, affects_state=True))
