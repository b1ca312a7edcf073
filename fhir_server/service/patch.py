"""PATCH: JSON Patch (RFC 6902), JSON Merge Patch (RFC 7386) and FHIRPath Patch
(http://hl7.org/fhir/R4/fhirpatch.html).

Each produces a new resource dict from the current one; the service then
validates and stores it like any update.
"""

from __future__ import annotations

import copy
from functools import cache, lru_cache
from typing import Any

import jsonpatch
from antlr4 import CommonTokenStream, InputStream, Token  # type: ignore[import-untyped]
from antlr4.error.ErrorListener import ErrorListener  # type: ignore[import-untyped]
from antlr4.error.Errors import RecognitionException  # type: ignore[import-untyped]
from fhirpathpy import evaluate
from fhirpathpy.models import models
from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer
from fhirpathpy.parser.generated.FHIRPathParser import FHIRPathParser

from fhir_server.errors import FhirError
from fhir_server.model.definitions import load_definitions
from fhir_server.model.parameters import parameter_list, part_list

_MARK = "__patch_node__"

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
#: FHIRPath Patch: a Parameters resource (JSON or XML)
FHIRPATH_PATCH = "application/fhir+json"


def patch_format(media_type: str, body: Any) -> str:
    """The kind of patch a PATCH body sent as ``media_type`` is.

    ``application/json`` is what general HTTP clients send: fhirpy sends the changed members
    of the resource (merge patch semantics), others a JSON Patch array. Its shape decides: an
    array is a JSON Patch, a Parameters resource a FHIRPath Patch, any other object a merge patch.
    """
    if media_type in (JSON_PATCH, MERGE_PATCH):
        return media_type
    if media_type == "application/json":
        if isinstance(body, list):
            return JSON_PATCH
        if isinstance(body, dict) and body.get("resourceType") != "Parameters":
            return MERGE_PATCH
    return FHIRPATH_PATCH


def apply_patch(resource: dict[str, Any], patch_type: str, body: Any) -> dict[str, Any]:
    """The patched copy of ``resource`` (``resource`` itself is left as it is)."""
    if patch_type == JSON_PATCH:
        return apply_json_patch(resource, body)
    if patch_type == MERGE_PATCH:
        return apply_merge_patch(resource, body)
    return apply_fhirpath_patch(resource, body)


def apply_json_patch(resource: dict[str, Any], operations: Any) -> dict[str, Any]:
    if not isinstance(operations, list):
        raise FhirError.of(400, "structure", "A JSON Patch body is a JSON array of operations")
    try:
        patched = jsonpatch.JsonPatch(operations).apply(resource, in_place=False)
    except jsonpatch.JsonPatchTestFailed as exc:
        raise FhirError.of(422, "business-rule", f"JSON Patch test failed: {exc}") from None
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, KeyError, IndexError, TypeError, ValueError) as exc:
        raise FhirError.of(400, "invalid", f"JSON Patch cannot be applied: {exc}") from None
    if not isinstance(patched, dict):
        raise FhirError.of(400, "invalid", "JSON Patch must leave a resource (a JSON object)")
    return patched


# --------------------------------------------------------------------------- JSON Merge Patch


def apply_merge_patch(resource: dict[str, Any], patch: Any) -> dict[str, Any]:
    """RFC 7386: members of ``patch`` replace those of ``resource``, ``null`` removes one,
    objects merge member by member, arrays and primitives are replaced whole."""
    if not isinstance(patch, dict):
        raise FhirError.of(400, "structure", "A JSON Merge Patch body is a JSON object (the members to change; null removes one)")
    return _merge(resource, patch)


def _merge(target: Any, patch: dict[str, Any]) -> dict[str, Any]:
    result = dict(target) if isinstance(target, dict) else {}
    for name, value in patch.items():
        if value is None:
            result.pop(name, None)
        elif isinstance(value, dict):
            merged = _merge(result.get(name), value)
            if merged or not value:
                result[name] = merged
            else:
                result.pop(name, None)  # every member removed: FHIR has no empty objects
        else:
            result[name] = value
    return result


# --------------------------------------------------------------------------- FHIRPath Patch


@cache
def _elements(type_path: str) -> dict[str, tuple[str, str, str]]:
    """JSON name -> (element path, max, type) for the elements directly under ``type_path``."""
    defs = load_definitions()["types"]
    root = type_path.split(".", 1)[0]
    out: dict[str, tuple[str, str, str]] = {}
    for el in defs.get(root, {}).get("elements", []):
        path = el["path"]
        if path.rsplit(".", 1)[0] != type_path:
            continue
        target = el.get("contentReference", "")[1:] or path
        for name, typ in el["names"].items():
            out[name] = (target, el["max"], typ)
    return out


def _child_type_path(type_path: str, name: str) -> str | None:
    info = _elements(type_path).get(name)
    if info is None:
        return None
    path, _, typ = info
    return path if typ in ("BackboneElement", "Element") else typ


def _annotate(node: Any, type_path: str | None, where: dict[int, tuple[Any, Any, str | None]], parent: Any, key: Any) -> Any:
    """Copy ``node`` marking every object so results of FHIRPath map back to their place."""
    if isinstance(node, dict):
        mark = len(where)
        where[mark] = (parent, key, type_path)
        if type_path is None and isinstance(node.get("resourceType"), str):
            type_path = node["resourceType"]
            where[mark] = (parent, key, type_path)
        out = {_MARK: mark}
        for k, v in node.items():
            child = _child_type_path(type_path, k) if type_path else None
            if k == "resource" or k == "contained":
                child = None  # nested resources name their own type
            out[k] = _annotate(v, child, where, node, k)
        return out
    if isinstance(node, list):
        return [_annotate(v, type_path, where, node, i) for i, v in enumerate(node)]
    return node


class _SyntaxErrors(ErrorListener):
    def syntaxError(self, recognizer: Any, offending: Any, line: int, column: int, msg: str, e: Any) -> None:
        raise ValueError(f"column {column + 1}: {msg}")


@lru_cache(maxsize=1024)
def _syntax_error(expression: str) -> str | None:
    """Why ``expression`` is not FHIRPath, or None. fhirpathpy's parser recovers from syntax
    errors silently (``Patient.name.(`` evaluates as ``Patient.name``), so a mistyped path would
    patch another element than the one meant."""
    lexer = FHIRPathLexer(InputStream(expression))
    parser = FHIRPathParser(CommonTokenStream(lexer))
    for recognizer in (lexer, parser):
        recognizer.removeErrorListeners()
        recognizer.addErrorListener(_SyntaxErrors())
    try:
        parser.expression()
        if parser.getCurrentToken().type != Token.EOF:
            return f"unexpected '{parser.getCurrentToken().text}'"
    except (ValueError, RecognitionException) as exc:
        return str(exc)
    return None


def _eval(doc: dict[str, Any], expression: str) -> list[Any]:
    problem = _syntax_error(expression)
    if problem is not None:
        raise FhirError.of(400, "invalid", f"FHIRPath Patch: '{expression}' is not a FHIRPath expression ({problem})")
    try:
        return evaluate(doc, expression, {}, models["r4"])
    except Exception as exc:  # noqa: BLE001 - fhirpathpy raises many kinds for bad expressions
        raise FhirError.of(400, "invalid", f"FHIRPath Patch: cannot evaluate '{expression}': {exc}") from None


def _split_last(path: str) -> tuple[str, str]:
    """``Patient.name[0].given`` -> (``Patient.name[0]``, ``given``), ignoring dots inside () and quotes."""
    depth, quote = 0, None
    for i in range(len(path) - 1, -1, -1):
        ch = path[i]
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == ")":
            depth += 1
        elif ch == "(":
            depth -= 1
        elif ch == "." and depth == 0:
            return path[:i], path[i + 1 :]
    raise FhirError.of(400, "invalid", f"FHIRPath Patch: '{path}' does not name an element")


class _Doc:
    def __init__(self, resource: dict[str, Any]) -> None:
        self.resource = resource
        self.where: dict[int, tuple[Any, Any, str | None]] = {}
        self.annotated = _annotate(resource, None, self.where, None, None)

    def locate(self, path: str) -> list[tuple[Any, Any]]:
        """(container, key) of each node ``path`` selects in the original resource."""
        results = _eval(self.annotated, path)
        if results and all(isinstance(r, dict) and _MARK in r for r in results):
            return [self.where[r[_MARK]][:2] for r in results]
        # primitives carry no mark: locate through the parent object
        base, index = path, None
        if path.endswith("]") and "[" in path:
            base, _, idx = path[:-1].rpartition("[")
            index = int(idx) if idx.isdigit() else None
        parent_path, name = _split_last(base)
        out = []
        for container, key in self._objects(parent_path):
            obj = container[key] if container is not None else self.resource
            if name in obj:
                out.append((obj[name], index) if index is not None and isinstance(obj[name], list) else (obj, name))
        return [loc for loc in out if _exists(*loc)]

    def _objects(self, path: str) -> list[tuple[Any, Any]]:
        results = _eval(self.annotated, path)
        if not all(isinstance(r, dict) and _MARK in r for r in results):
            raise FhirError.of(400, "invalid", f"FHIRPath Patch: '{path}' must select elements, not values")
        return [self.where[r[_MARK]][:2] for r in results]

    def one_object(self, path: str) -> tuple[dict[str, Any], str | None]:
        found = _eval(self.annotated, path)
        if len(found) != 1 or not isinstance(found[0], dict) or _MARK not in found[0]:
            raise FhirError.of(400, "invalid", f"FHIRPath Patch: '{path}' must select exactly one element")
        container, key, type_path = self.where[found[0][_MARK]]
        return (container[key] if container is not None else self.resource), type_path


def _exists(container: Any, key: Any) -> bool:
    if isinstance(container, list):
        return isinstance(key, int) and 0 <= key < len(container)
    return key in container


def _value(part: dict[str, Any]) -> Any:
    """The value of a ``value`` part: value[x] or nested parts (a complex value)."""
    for k, v in part.items():
        if k.startswith("value"):
            return v
    if "part" in part:
        return {p["name"]: _value(p) for p in part_list(part, "Parameters.parameter.part") if "name" in p}
    raise FhirError.of(400, "invalid", "FHIRPath Patch: the operation has no value")


def _operation(param: dict[str, Any], where: str) -> dict[str, Any]:
    if param.get("name") != "operation":
        raise FhirError.of(400, "invalid", "FHIRPath Patch parameters must all be named 'operation'")
    op: dict[str, Any] = {}
    for index, part in enumerate(part_list(param, where)):
        name = part.get("name")
        if not isinstance(name, str):
            raise FhirError.of(400, "invalid", f"FHIRPath Patch: {where}.part[{index}] needs a name", f"{where}.part[{index}]")
        op[name] = part if name == "value" else next((v for k, v in part.items() if k.startswith("value")), None)
    return op


def apply_fhirpath_patch(resource: dict[str, Any], parameters: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(parameters, dict) or parameters.get("resourceType") != "Parameters":
        raise FhirError.of(
            400,
            "invalid",
            "A FHIRPath Patch body is a Parameters resource (send a JSON Patch as application/json-patch+json, "
            "a JSON Merge Patch as application/merge-patch+json)",
        )
    result = copy.deepcopy(resource)
    for index, param in enumerate(parameter_list(parameters)):
        op = _operation(param, f"Parameters.parameter[{index}]")
        try:
            _apply_one(result, op)
        except FhirError as exc:
            exc.issues = [i.__class__(i.severity, i.code, f"operation[{index}]: {i.diagnostics}", i.expression) for i in exc.issues]
            raise
    return result


def _apply_one(resource: dict[str, Any], op: dict[str, Any]) -> None:
    kind, path = op.get("type"), op.get("path")
    if not isinstance(path, str):
        raise FhirError.of(400, "invalid", "FHIRPath Patch: each operation needs a path")
    doc = _Doc(resource)
    if kind == "add":
        target, type_path = doc.one_object(path)
        name = op.get("name")
        if not isinstance(name, str):
            raise FhirError.of(400, "invalid", "FHIRPath Patch add: 'name' is required")
        value = _value(op.get("value") or {})
        info = _elements(type_path).get(name) if type_path else None
        if info is not None and info[1] != "1":
            target.setdefault(name, []).append(value)
        elif name in target:
            raise FhirError.of(400, "invalid", f"FHIRPath Patch add: {path}.{name} already has a value")
        else:
            target[name] = value
    elif kind == "insert":
        container, key = _single_list(doc, path)
        at = op.get("index")
        if not isinstance(at, int) or not 0 <= at <= len(container[key]):
            raise FhirError.of(400, "invalid", f"FHIRPath Patch insert: index {at!r} is out of range")
        container[key].insert(at, _value(op.get("value") or {}))
    elif kind == "delete":
        locations = doc.locate(path)
        if len(locations) > 1:
            raise FhirError.of(400, "invalid", f"FHIRPath Patch delete: '{path}' selects more than one element")
        for container, key in locations:
            _remove(resource, container, key)
    elif kind == "replace":
        locations = doc.locate(path)
        if len(locations) != 1:
            raise FhirError.of(400, "invalid", f"FHIRPath Patch replace: '{path}' must select exactly one element")
        container, key = locations[0]
        container[key] = _value(op.get("value") or {})
    elif kind == "move":
        container, key = _single_list(doc, path)
        items = container[key]
        src, dst = op.get("source"), op.get("destination")
        if not (isinstance(src, int) and isinstance(dst, int) and 0 <= src < len(items) and 0 <= dst < len(items)):
            raise FhirError.of(400, "invalid", "FHIRPath Patch move: source and destination must be valid indexes")
        items.insert(dst, items.pop(src))
    else:
        raise FhirError.of(400, "invalid", f"FHIRPath Patch: unknown operation type {kind!r}")


def _single_list(doc: _Doc, path: str) -> tuple[Any, Any]:
    parent_path, name = _split_last(path)
    parent, _ = doc.one_object(parent_path)
    if not isinstance(parent.get(name), list):
        raise FhirError.of(400, "invalid", f"FHIRPath Patch: '{path}' is not a list")
    return parent, name


def _remove(resource: dict[str, Any], container: Any, key: Any) -> None:
    if isinstance(container, list):
        container.pop(key)
    else:
        del container[key]
    _prune(resource)


def _prune(node: Any) -> bool:
    """Drop objects and arrays a delete left empty (FHIR forbids empty ones); True if ``node`` is empty."""
    if isinstance(node, dict):
        for k in [k for k, v in node.items() if _prune(v)]:
            del node[k]
        return not node
    if isinstance(node, list):
        node[:] = [v for v in node if not _prune(v)]
        return not node
    return False
