"""The R4 core extension definitions, prepared for checking instances of them.

``data/r4_extensions.json.gz`` (generated from hl7.fhir.r4.core 4.0.1 by
``scripts/generate_r4_extensions.py``) holds the 393 extension StructureDefinitions of the
R4 package, reduced to what a write checks: where each may be used (its context), the types
of its ``value[x]`` or its sub-extensions with their cardinality, and whether it is a
modifier. Extensions with any other url (national, IG or local ones) are not known here and
are accepted as they are: only their generic shape is checked (ext-1, by structure.py).

The structure checker (structure.py) calls :func:`check_core_extension` for every extension
whose url is in :data:`CORE`; the definitions are built once, on first use.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

DATA_FILE = Path(__file__).resolve().parent / "data" / "r4_extensions.json.gz"

#: (code, diagnostics, expression) -> None: how an issue is reported
Report = Callable[[str, str, str], None]


class ExtensionDef:
    """One core extension, or one sub-extension (``parts``) of a complex one."""

    __slots__ = ("anywhere", "contexts", "max", "min", "modifier", "parts", "types", "url", "value_suffixes")

    def __init__(self, url: str, record: dict[str, Any]) -> None:
        self.url = url
        contexts = record.get("context", ())
        self.contexts = frozenset(contexts)
        #: "Element" admits every element and resource (extensibility.html#context)
        self.anywhere = "Element" in self.contexts
        self.modifier = bool(record.get("modifier"))
        self.min: int = record.get("min", 0)
        self.max: int | None = record.get("max")
        #: a simple extension: its value[x] type codes; None for a complex one
        self.types: tuple[str, ...] | None = tuple(record["value"]) if "value" in record else None
        #: JSON name suffixes of the allowed value[x] (``String`` for valueString)
        self.value_suffixes = frozenset(_suffix(t) for t in self.types or ())
        self.parts = {name: ExtensionDef(name, part) for name, part in record.get("parts", {}).items()}


class CoreExtensions:
    """The core definitions by url, and the base type of every R4 type."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.by_url = {url: ExtensionDef(url, record) for url, record in data["extensions"].items()}
        self.bases: dict[str, str] = data["bases"]
        #: ``CodeableConcept`` -> ``CodeableConcept``, ``String`` -> ``string``
        self.type_of_suffix = {_suffix(t): t for t in self.bases}

    def ancestors(self, type_code: str) -> tuple[str, ...]:
        """``code`` -> (``code``, ``string``, ``Element``): the names a context may use for it."""
        out = [type_code]
        while out[-1] in self.bases:
            out.append(self.bases[out[-1]])
        return tuple(out)


def _suffix(type_code: str) -> str:
    return type_code[0].upper() + type_code[1:]


@lru_cache(maxsize=1)
def core_extensions() -> CoreExtensions:
    with gzip.open(DATA_FILE, "rb") as fh:
        return CoreExtensions(json.load(fh))


def _value_key(ext: dict[str, Any]) -> str | None:
    """The JSON name suffix of the extension's value (``valueCode`` or only ``_valueCode``)."""
    for key in ext:
        if key[:5] == "value":
            return key[5:]
        if key[:6] == "_value":
            return key[6:]
    return None


def check_core_extension(ext: dict[str, Any], definition: ExtensionDef, where: str, report: Report) -> None:
    """The value or sub-extensions of one extension against its core definition.

    Context and modifier placement are the caller's (they depend on where the extension
    sits); this checks the extension's own content, recursively for complex extensions.
    """
    core = core_extensions()
    suffix = _value_key(ext)
    label = "sub-extension" if definition.url[:4] != "http" else "extension"
    if definition.types is not None:
        if "extension" in ext:
            report(
                "structure",
                f"The {label} '{definition.url}' is a simple extension with a value; it has no nested extensions",
                f"{where}.extension[0]",
            )
        if suffix is None:
            if "extension" in ext:  # without nested ones ext-1 already reports the missing value
                report("structure", f"The {label} '{definition.url}' needs a value ({_types(definition.types)})", where)
        elif suffix not in definition.value_suffixes:
            found = core.type_of_suffix.get(suffix)
            if found is not None:  # an unknown value[x] name is reported by the structure walk
                report(
                    "structure",
                    f"The {label} '{definition.url}' takes a value of type {_types(definition.types)}, not {found}",
                    f"{where}.value.ofType({found})",
                )
        return
    if suffix is not None:
        found = core.type_of_suffix.get(suffix, suffix)
        report(
            "structure",
            f"The {label} '{definition.url}' is a complex extension: it has sub-extensions, not a value",
            f"{where}.value.ofType({found})",
        )
        if "extension" not in ext:
            return  # the wrong shape is the error: no list of missing sub-extensions on top
    subs = ext.get("extension")
    counts: dict[str, int] = {}
    if type(subs) is list:
        for i, sub in enumerate(subs):
            if type(sub) is not dict:
                continue
            url = sub.get("url")
            part = definition.parts.get(url) if type(url) is str else None
            if part is None:
                continue  # slicing is open: other sub-extensions are allowed
            counts[part.url] = counts.get(part.url, 0) + 1
            if part.max is not None and counts[part.url] == part.max + 1:
                report(
                    "structure",
                    f"The extension '{definition.url}' allows at most {part.max} '{part.url}' sub-extension(s)",
                    f"{where}.extension[{i}]",
                )
            check_core_extension(sub, part, f"{where}.extension[{i}]", report)
    for name, part in definition.parts.items():
        if counts.get(name, 0) < part.min:
            report("structure", f"The extension '{definition.url}' needs the sub-extension '{name}'", where)


def _types(types: tuple[str, ...]) -> str:
    return " or ".join(types)
