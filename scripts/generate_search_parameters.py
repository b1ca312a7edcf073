"""Generate the slim search data vendored under ``fhir_server/search/data/``.

Reads the official HL7 ``hl7.fhir.r4.core`` 4.0.1 package (CC0; located or
fetched by :func:`scripts.r4_package.package_dir`) and writes:

* ``search_parameters.json.gz``: one slim dict per SearchParameter (url, code,
  base, type, expression, target, modifier, comparator, multipleOr/And,
  component, xpathUsage);
* ``compartments.json``: compartment -> resource type -> parameter codes;
* ``summary_elements.json``: resource type -> top-level element names that are
  ``isSummary`` and that are mandatory (``min > 0``), plus the choice ([x])
  elements, for ``_summary`` and ``_elements``; and ``single``: every element
  path (any depth) with ``max = 1``, so the query planner knows which
  parameters hold at most one value per resource;
* ``code_systems.json``: element path -> the code system of ``code`` elements
  bound (required) to a single-system ValueSet: the implicit token system.

Run: ``python scripts/generate_search_parameters.py`` from the project root.
The output is deterministic (sorted) so regenerating gives no diff.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from r4_package import package_dir  # noqa: E402

OUT = ROOT / "fhir_server" / "search" / "data"
KEEP = ("url", "code", "base", "type", "expression", "target", "modifier", "comparator", "multipleOr", "multipleAnd", "xpathUsage")


def slim_param(sp: dict) -> dict:
    out = {k: sp[k] for k in KEEP if k in sp}
    if "component" in sp:
        out["component"] = [{"definition": c["definition"], "expression": c["expression"]} for c in sp["component"]]
    return out


def search_parameters(pkg: Path) -> list[dict]:
    params = []
    for f in sorted(pkg.glob("SearchParameter-*.json")):
        sp = json.loads(f.read_text(encoding="utf-8"))
        if "base" not in sp:  # a handful of extension params in the package lack base
            continue
        params.append(slim_param(sp))
    params.sort(key=lambda p: (p["url"], p["code"]))
    return params


def compartments(pkg: Path) -> dict:
    out: dict[str, dict[str, list[str]]] = {}
    for f in sorted(pkg.glob("CompartmentDefinition-*.json")):
        cd = json.loads(f.read_text(encoding="utf-8"))
        if cd.get("id") == "example":
            continue
        out[cd["code"]] = {r["code"]: r["param"] for r in cd.get("resource", []) if r.get("param")}
    return out


def summary_elements(pkg: Path) -> dict:
    out: dict[str, dict[str, list[str]]] = {}
    for f in sorted(pkg.glob("StructureDefinition-*.json")):
        sd = json.loads(f.read_text(encoding="utf-8"))
        if sd.get("kind") != "resource" or sd.get("derivation") != "specialization":
            continue
        name = sd["type"]
        summary, mandatory, choice, single = [], [], [], []
        for el in sd["snapshot"]["element"]:
            parts = el["path"].split(".")
            if len(parts) >= 2 and el.get("max") == "1":
                single.append(".".join(parts[1:]))
            if len(parts) != 2:
                continue
            elem = parts[1]
            if elem.endswith("[x]"):
                elem = elem[:-3]
                choice.append(elem)
            if el.get("isSummary"):
                summary.append(elem)
            if el.get("min", 0) > 0:
                mandatory.append(elem)
        out[name] = {"summary": summary, "mandatory": mandatory, "choice": choice, "single": single}
    return out


def code_systems(pkg: Path) -> dict[str, str]:
    """Element path -> code system of ``code`` elements with a required single-system binding.

    Token search on a ``code`` element has an implicit system (``gender=
    http://hl7.org/fhir/administrative-gender|male``); this is where it comes from.
    """
    vs_system: dict[str, str] = {}
    for f in sorted(pkg.glob("ValueSet-*.json")):
        vs = json.loads(f.read_text(encoding="utf-8"))
        includes = (vs.get("compose") or {}).get("include") or []
        systems = {i.get("system") for i in includes}
        if len(systems) == 1 and None not in systems and not (vs.get("compose") or {}).get("exclude"):
            vs_system[vs["url"]] = systems.pop()
    out: dict[str, str] = {}
    for f in sorted(pkg.glob("StructureDefinition-*.json")):
        sd = json.loads(f.read_text(encoding="utf-8"))
        if sd.get("derivation") != "specialization" or sd.get("kind") not in ("resource", "complex-type"):
            continue
        for el in sd["snapshot"]["element"]:
            types = [t["code"] for t in el.get("type", [])]
            binding = el.get("binding") or {}
            if types == ["code"] and binding.get("strength") == "required" and binding.get("valueSet"):
                system = vs_system.get(binding["valueSet"].split("|")[0])
                if system:
                    out[el["path"]] = system
    return out


def main() -> None:
    pkg = package_dir()
    OUT.mkdir(parents=True, exist_ok=True)
    data = json.dumps(search_parameters(pkg), sort_keys=True, separators=(",", ":")).encode()
    # mtime=0 keeps the gzip bytes reproducible
    (OUT / "search_parameters.json.gz").write_bytes(gzip.compress(data, mtime=0))
    (OUT / "compartments.json").write_text(json.dumps(compartments(pkg), sort_keys=True, indent=1) + "\n")
    (OUT / "summary_elements.json").write_text(json.dumps(summary_elements(pkg), sort_keys=True, separators=(",", ":")) + "\n")
    (OUT / "code_systems.json").write_text(json.dumps(code_systems(pkg), sort_keys=True, indent=0) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
