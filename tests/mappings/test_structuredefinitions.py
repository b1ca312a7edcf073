import json
from pathlib import Path

from mappings import systems as S
from mappings.bpjs_peserta import bpjs_peserta_to_fhir
from mappings.dukcapil import dukcapil_to_fhir
from mappings.pcare import kunjungan_to_fhir, pendaftaran_to_fhir
from mappings.sep import sep_to_fhir
from terminology import indonesia
from tests.mappings.helpers import assert_valid, fixture

SD_DIR = Path(S.__file__).parent / "structuredefinitions"


def definitions():
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(SD_DIR.glob("*.json"))]


def extension_urls(node, found):
    if isinstance(node, dict):
        if "url" in node and ("extension" in node or any(k.startswith("value") for k in node)) and node["url"].startswith("http"):
            found.add(node["url"])
        for value in node.values():
            extension_urls(value, found)
    elif isinstance(node, list):
        for value in node:
            extension_urls(value, found)
    return found


def test_structuredefinitions_are_valid():
    assert_valid(definitions())


def test_every_extension_of_ours_that_the_mappings_emit_is_defined():
    resources = (
        dukcapil_to_fhir(fixture("dukcapil_call_nik")).resources
        + bpjs_peserta_to_fhir(fixture("bpjs_peserta")).resources
        + sep_to_fhir(fixture("sep_insert_request")).resources
        + pendaftaran_to_fhir(fixture("pcare_pendaftaran")).resources
        + kunjungan_to_fhir(fixture("pcare_kunjungan")).resources
    )
    ours = {u for u in extension_urls(resources, set()) if u.startswith(S.NS)}
    assert len(ours) >= 8
    assert ours <= {d["url"] for d in definitions()}


def test_bound_value_sets_exist():
    value_sets = {r["url"] for r in indonesia.resources() if r["resourceType"] == "ValueSet"}
    bound = {e["binding"]["valueSet"] for d in definitions() for e in d["differential"]["element"] if "binding" in e}
    assert bound <= value_sets
