"""Write the R4 core CodeSystems and ValueSets that the server binds as FHIR resources.

Source: the official HL7 ``hl7.fhir.r4.core`` 4.0.1 package (CC0), via
``scripts/r4_package.py``. Output: ``terminology/content/r4/bound-terminology.json.gz``, a
``collection`` Bundle of every ValueSet used by a required binding of an R4 resource or datatype
(``terminology/content/r4/required_valuesets.json.gz`` lists them) plus the CodeSystems those
ValueSets include, narrative removed. The terminology engine loads it and the server stores each
resource at start-up, so they can be read, searched and used by $lookup/$expand/$validate-code.
Run: ``python scripts/generate_r4_terminology.py``.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from r4_package import package_dir  # noqa: E402

from terminology import r4_valuesets  # noqa: E402

OUT = ROOT / "terminology" / "content" / "r4" / "bound-terminology.json.gz"


def main() -> None:
    pkg = package_dir()
    by_url: dict[str, dict] = {}
    for path in sorted(pkg.glob("ValueSet-*.json")) + sorted(pkg.glob("CodeSystem-*.json")):
        resource = json.loads(path.read_text(encoding="utf-8"))
        by_url[f"{resource['resourceType']}|{resource['url']}"] = resource
    value_sets = [by_url[f"ValueSet|{u.split('|')[0]}"] for u in r4_valuesets.urls() if f"ValueSet|{u.split('|')[0]}" in by_url]
    systems = sorted({inc["system"] for vs in value_sets for inc in vs.get("compose", {}).get("include", []) if inc.get("system")})
    code_systems = [by_url[f"CodeSystem|{s}"] for s in systems if f"CodeSystem|{s}" in by_url]
    entries = []
    for resource in sorted(value_sets, key=lambda r: r["url"]) + sorted(code_systems, key=lambda r: r["url"]):
        slim = {k: v for k, v in resource.items() if k != "text"}
        slim.get("meta", {}).pop("lastUpdated", None)
        if slim.get("meta") == {}:
            slim.pop("meta")
        entries.append({"resource": slim})
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": entries}
    OUT.write_bytes(gzip.compress(json.dumps(bundle, ensure_ascii=False, sort_keys=True).encode("utf-8"), mtime=0))
    print(f"{OUT}: {len(value_sets)} ValueSets, {len(code_systems)} CodeSystems")


if __name__ == "__main__":
    main()
