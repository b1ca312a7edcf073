"""Checks for SATUSEHAT's ``administrativeCode`` address extension (Kemendagri region codes).

The extension (``urls.SATUSEHAT_ADMINISTRATIVE_CODE``) has sub-extensions ``province`` (2 digits),
``city`` (4), ``district`` (6), ``village`` (10), ``rt`` and ``rw``, each a ``valueCode``; region
codes carry no dots. Rules, from hard to soft:

- structure (not an extension of sub-extensions, a repeated or unknown part, a value that is
  not a ``valueCode``) and malformed codes (wrong length, dots, letters): **error**;
- codes that do not nest (the village must start with its district, the district with its city,
  the city with its province): **error**;
- well-formed codes that are not in the current decree: **warning**, or **error** when
  ``strict`` (decrees renumber regions, so old addresses keep old codes).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Collection
from typing import Any

from fhir_server.errors import Issue, error, warning
from fhir_server.model.structure import expression_at

from . import urls
from .regions import RegionIndex, region_index

#: Region parts, outermost first, with their code length.
REGION_PARTS = (("province", 2), ("city", 4), ("district", 6), ("village", 10))
_LENGTH = dict(REGION_PARTS)
_RT_RW = re.compile(r"[0-9]{1,3}")


def check_administrative_code(ext: dict, strict: bool = False, path: str = "extension", index: RegionIndex | None = None) -> list[Issue]:
    """Issues for one administrativeCode extension found at FHIRPath ``path`` (e.g. ``Patient.address[0].extension[0]``)."""
    issues: list[Issue] = []
    parts = ext.get("extension")
    if not isinstance(parts, list) or not parts:
        return [
            error("structure", "The administrativeCode extension needs sub-extensions (province, city, district, village, rt, rw)", path)
        ]
    if any(k.startswith("value") for k in ext):
        issues.append(error("structure", "The administrativeCode extension has sub-extensions, not a value", path))
    codes: dict[str, tuple[str, str]] = {}  # part -> (code, expression)
    seen: set[str] = set()
    for i, sub in enumerate(parts):
        where = f"{path}.extension[{i}]"
        name = sub.get("url") if isinstance(sub, dict) else None
        if name not in _LENGTH and name not in ("rt", "rw"):
            issues.append(
                error(
                    "structure", f"Unknown administrativeCode part '{name}' (expected province, city, district, village, rt or rw)", where
                )
            )
            continue
        value = sub.get("valueCode")
        if not isinstance(value, str):
            other = next((k for k in sub if k.startswith("value")), None)
            issues.append(
                error("structure", f"administrativeCode '{name}' must be a valueCode" + (f", not {other}" if other else ""), where)
            )
            continue
        where = f"{where}.value.ofType(code)"
        if name in seen:
            issues.append(error("structure", f"administrativeCode '{name}' appears more than once", where))
            continue
        seen.add(name)
        if name in ("rt", "rw"):
            if not _RT_RW.fullmatch(value):
                issues.append(warning("value", f"administrativeCode {name} '{value}' is not 1 to 3 digits", where))
            continue
        problem = _malformed(name, value)
        if problem:
            issues.append(error("value", problem, where))
            continue
        codes[name] = (value, where)
    issues += _nesting(codes)
    issues += _existence(codes, strict, index)
    return issues


def _malformed(name: str, value: str) -> str | None:
    length = _LENGTH[name]
    if value.isdigit() and len(value) == length and value.isascii():
        return None
    hint = ""
    undotted = value.replace(".", "")
    if "." in value and undotted.isdigit() and len(undotted) == length:
        hint = f"; write it without dots: '{undotted}'"
    return f"administrativeCode {name} '{value}' must be {length} digits (a Kemendagri code without dots){hint}"


def _nesting(codes: dict[str, tuple[str, str]]) -> list[Issue]:
    issues = []
    present = [(name, codes[name]) for name, _ in REGION_PARTS if name in codes]
    for (outer, (outer_code, _)), (inner, (inner_code, where)) in itertools.pairwise(present):
        if not inner_code.startswith(outer_code):
            issues.append(
                error(
                    "business-rule",
                    f"administrativeCode {inner} '{inner_code}' is not inside {outer} '{outer_code}' (it must start with '{outer_code}')",
                    where,
                )
            )
    return issues


def _existence(codes: dict[str, tuple[str, str]], strict: bool, index: RegionIndex | None) -> list[Issue]:
    ix = index or region_index()
    make = error if strict else warning
    return [
        make("code-invalid", f"administrativeCode {name} '{code}' is not a known Kemendagri region code ({urls.KEMENDAGRI_WILAYAH})", where)
        for name, (code, where) in codes.items()
        if code not in ix.position
    ]


def check_resource_administrative_codes(resource: dict, strict: bool = False, extension_urls: Collection[str] | None = None) -> list[Issue]:
    """Every administrativeCode extension anywhere in ``resource`` (addresses, birthPlace, contacts...).

    ``extension_urls``: the url of every extension in an ``extension`` array of ``resource``,
    when the caller has them all (the structure check collects them): then ``resource`` is
    walked only if the administrativeCode extension is among them."""
    issues: list[Issue] = []
    present = _has_code(resource) if extension_urls is None else urls.SATUSEHAT_ADMINISTRATIVE_CODE in extension_urls
    if present:  # most resources have none: found without building locations
        _walk(resource, resource, (), strict, issues)
    return issues


def _has_code(node: Any) -> bool:
    """Whether an extension ``_walk`` checks is anywhere in ``node`` (the same objects visited:
    every ``extension`` array's objects, every other value)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "extension" and isinstance(value, list):
                for ext in value:
                    if isinstance(ext, dict) and ext.get("url") == urls.SATUSEHAT_ADMINISTRATIVE_CODE:
                        return True
                    if _has_code(ext):
                        return True
            elif isinstance(value, (dict, list)) and _has_code(value):
                return True
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, (dict, list)) and _has_code(item):
                return True
    return False


def _walk(root: dict, node: Any, loc: tuple[str | int, ...], strict: bool, issues: list[Issue]) -> None:
    """Find the extensions by JSON location; their FHIRPath (``valueAddress`` is
    ``value.ofType(Address)``) is worked out only for the ones found."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "extension" and isinstance(value, list):
                for i, ext in enumerate(value):
                    if isinstance(ext, dict) and ext.get("url") == urls.SATUSEHAT_ADMINISTRATIVE_CODE:
                        where = expression_at(root, (*loc, key, i)) or "extension"
                        issues.extend(check_administrative_code(ext, strict, where))
                    else:
                        _walk(root, ext, (*loc, key, i), strict, issues)
            elif isinstance(value, (dict, list)):
                _walk(root, value, (*loc, key), strict, issues)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            _walk(root, item, (*loc, i), strict, issues)
