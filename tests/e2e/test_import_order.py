"""``fhir-server import`` of files whose references point into each other, in any file order.

A conditional reference (``Practitioner?identifier=...``, as Synthea's bulk files write them) is
resolved by a search when its resource is written (R4 http.html#trules), so its target must be
stored first, whichever file holds it; a cycle of them has no such order and is written in two
passes. Files here are named so that reading them alphabetically is the reverse of what works.
"""

from __future__ import annotations

import gc
import json
import random
from pathlib import Path

import orjson
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from fhir_server.cli import app
from fhir_server.service import import_order
from fhir_server.service.import_order import Node
from fhir_server.storage import changelog
from fhir_server.storage.db import Database
from fhir_server.storage.tables import resources
from tests.conftest import BACKENDS

runner = CliRunner()
AMB = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}
NIK = "https://fhir.kemkes.go.id/id/nik"
IHS = "https://fhir.kemkes.go.id/id/nakes-his-number"
ORG = "https://fhir.kemkes.go.id/id/organization"
SYNTHEA = Path("/work/shared/data/synthea-10-patients")


def _write(folder: Path, name: str, *rows: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))


def _import(url: str, *paths: Path, batch_size: int = 500, workers: int = 1):
    args = ["import", *map(str, paths), "--database-url", url, "--batch-size", str(batch_size), "--workers", str(workers)]
    return runner.invoke(app, args)


#: the importer in this process, and in two forked processes writing transactions at once (with
#: one resource per transaction, so that they do: a transaction is handed out as soon as those it
#: needs are committed)
WRITERS = [pytest.param((1, 500), id="one-process"), pytest.param((2, 1), id="two-processes")]


def _stored(url: str) -> dict[tuple[str, str], dict]:
    db = Database.from_url(url)
    try:
        with db.read() as conn:
            rows = conn.execute(
                sa.select(resources.c.res_type, resources.c.res_id, resources.c.body).where(resources.c.deleted == sa.false())
            )
            return {(r.res_type, r.res_id): json.loads(bytes(r.body)) for r in rows}
    finally:
        db.dispose()


def _reverse_order_set(folder: Path) -> None:
    """a_ refers to b_, b_ to c_ ...: alphabetical order is the worst order."""
    _write(
        folder,
        "a_observation.ndjson",
        {
            "resourceType": "Observation",
            "id": "obs-1",
            "status": "final",
            "code": {"text": "tekanan darah"},
            "subject": {"reference": f"Patient?identifier={NIK}|3171000000000001"},
            "encounter": {"reference": "Encounter/enc-1"},
            "performer": [{"reference": f"Practitioner?identifier={IHS}|10009"}],
        },
    )
    _write(
        folder,
        "b_encounter.ndjson",
        {
            "resourceType": "Encounter",
            "id": "enc-1",
            "status": "finished",
            "class": AMB,
            "subject": {"reference": f"Patient?identifier={NIK}|3171000000000001"},
            "participant": [{"individual": {"reference": f"Practitioner?identifier={IHS}|10009"}}],
            "serviceProvider": {"reference": f"Organization?identifier={ORG}|rs-1"},
        },
    )
    _write(
        folder, "c_practitioner.ndjson", {"resourceType": "Practitioner", "id": "dr-1", "identifier": [{"system": IHS, "value": "10009"}]}
    )
    _write(
        folder,
        "d_patient.ndjson",
        {
            "resourceType": "Patient",
            "id": "pat-1",
            "identifier": [{"system": NIK, "value": "3171000000000001"}],
            "managingOrganization": {"reference": f"Organization?identifier={ORG}|rs-1"},
        },
    )
    _write(
        folder, "e_organization.ndjson", {"resourceType": "Organization", "id": "org-1", "identifier": [{"system": ORG, "value": "rs-1"}]}
    )


@pytest.mark.parametrize("writers", WRITERS)
@pytest.mark.parametrize("fresh_database_url", BACKENDS, indirect=True)
def test_files_in_reverse_dependency_order_load(fresh_database_url, tmp_path, writers):
    src = tmp_path / "in"
    _reverse_order_set(src)
    workers, _ = writers
    result = _import(fresh_database_url, src, batch_size=2 if workers == 1 else 1, workers=workers)
    assert result.exit_code == 0, result.output
    assert "5 created, 0 existing, 0 errors" in result.stdout
    stored = _stored(fresh_database_url)
    # conditional references resolved by the server to the resources of the import
    obs = stored[("Observation", "obs-1")]
    assert obs["subject"] == {"reference": "Patient/pat-1"}
    assert obs["performer"] == [{"reference": "Practitioner/dr-1"}]
    assert obs["encounter"] == {"reference": "Encounter/enc-1"}
    assert stored[("Encounter", "enc-1")]["serviceProvider"] == {"reference": "Organization/org-1"}
    assert stored[("Patient", "pat-1")]["managingOrganization"] == {"reference": "Organization/org-1"}
    assert all(s["meta"]["versionId"] == "1" for s in stored.values() if s["resourceType"] != "OperationDefinition")

    again = _import(fresh_database_url, src, workers=workers, batch_size=1)
    assert again.exit_code == 0 and "0 created, 5 existing, 0 errors" in again.stdout


@pytest.mark.parametrize("writers", WRITERS)
@pytest.mark.parametrize("fresh_database_url", BACKENDS, indirect=True)
def test_a_cycle_of_references_loads_with_nothing_lost(fresh_database_url, tmp_path, writers):
    workers, batch_size = writers
    src = tmp_path / "in"
    # two Organizations, each partOf the other by a conditional reference; one refers to itself too
    _write(
        src,
        "orgs.ndjson",
        {
            "resourceType": "Organization",
            "id": "org-a",
            "identifier": [{"system": ORG, "value": "a"}],
            "partOf": {"reference": f"Organization?identifier={ORG}|b"},
        },
        {
            "resourceType": "Organization",
            "id": "org-b",
            "identifier": [{"system": ORG, "value": "b"}],
            "partOf": {"reference": f"Organization?identifier={ORG}|a"},
        },
        {
            "resourceType": "Organization",
            "id": "org-self",
            "identifier": [{"system": ORG, "value": "self"}],
            "partOf": {"reference": f"Organization?identifier={ORG}|self"},
        },
    )
    # a cycle of literal references: Encounter.diagnosis -> Condition, Condition.encounter -> Encounter
    _write(
        src,
        "clinical.ndjson",
        {
            "resourceType": "Condition",
            "id": "cond-1",
            "subject": {"reference": "Patient/pat-9"},
            "encounter": {"reference": "Encounter/enc-9"},
            "code": {"text": "demam"},
        },
        {
            "resourceType": "Encounter",
            "id": "enc-9",
            "status": "finished",
            "class": AMB,
            "subject": {"reference": "Patient/pat-9"},
            "diagnosis": [{"condition": {"reference": "Condition/cond-1"}}],
            "serviceProvider": {"reference": f"Organization?identifier={ORG}|a"},
        },
        {"resourceType": "Patient", "id": "pat-9", "managingOrganization": {"reference": f"Organization?identifier={ORG}|b"}},
    )
    result = _import(fresh_database_url, src, batch_size=batch_size, workers=workers)
    assert result.exit_code == 0, result.output
    assert "6 created, 0 existing, 0 errors" in result.stdout
    stored = _stored(fresh_database_url)
    assert stored[("Organization", "org-a")]["partOf"] == {"reference": "Organization/org-b"}
    assert stored[("Organization", "org-b")]["partOf"] == {"reference": "Organization/org-a"}
    assert stored[("Organization", "org-self")]["partOf"] == {"reference": "Organization/org-self"}
    # the second pass resolved each to what its stand-in already said: no second version
    assert {stored[("Organization", o)]["meta"]["versionId"] for o in ("org-a", "org-b", "org-self")} == {"1"}
    assert stored[("Encounter", "enc-9")]["serviceProvider"] == {"reference": "Organization/org-a"}
    assert stored[("Encounter", "enc-9")]["diagnosis"][0]["condition"] == {"reference": "Condition/cond-1"}
    assert stored[("Patient", "pat-9")]["managingOrganization"] == {"reference": "Organization/org-b"}
    assert not [k for k, v in stored.items() if "?identifier=" in json.dumps(v)]

    again = _import(fresh_database_url, src, batch_size=batch_size, workers=workers)
    assert again.exit_code == 0 and "0 created, 6 existing, 0 errors" in again.stdout


@pytest.mark.parametrize("writers", WRITERS)
@pytest.mark.parametrize("fresh_database_url", BACKENDS, indirect=True)
def test_errors_name_file_and_line_and_the_rest_loads(fresh_database_url, tmp_path, writers):
    workers, batch_size = writers
    src = tmp_path / "in"
    _write(
        src,
        "a_encounters.ndjson",
        {
            "resourceType": "Encounter",
            "id": "enc-ok",
            "status": "finished",
            "class": AMB,
            "serviceProvider": {"reference": f"Organization?identifier={ORG}|good"},
        },
        {
            "resourceType": "Encounter",
            "id": "enc-orphan",
            "status": "finished",
            "class": AMB,
            "serviceProvider": {"reference": f"Organization?identifier={ORG}|broken"},
        },
        {"resourceType": "Encounter", "id": "enc-dangling", "status": "finished", "class": AMB, "subject": {"reference": "Patient/nobody"}},
    )
    _write(
        src,
        "b_organizations.ndjson",
        {"resourceType": "Organization", "id": "org-good", "identifier": [{"system": ORG, "value": "good"}]},
        {"resourceType": "Organization", "id": "org-broken", "identifier": [{"system": ORG, "value": "broken"}], "active": "yes"},
    )
    result = _import(fresh_database_url, src, batch_size=batch_size, workers=workers)
    assert result.exit_code == 1
    assert "3 created, 0 existing, 2 errors, 1 unresolved references" in result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 2
    assert any(f"{src / 'b_organizations.ndjson'}:2: 400" in e for e in errors)
    orphan = next(e for e in errors if f"{src / 'a_encounters.ndjson'}:2: 412" in e)
    assert f"{src / 'b_organizations.ndjson'}:2" in orphan  # names the resource whose failure it follows
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    where = src / "a_encounters.ndjson"
    assert warnings == [f"warning: {where}:3: Encounter/enc-dangling refers to Patient/nobody, which is neither in the import nor stored"]
    assert set(_stored(fresh_database_url)) >= {("Encounter", "enc-ok"), ("Organization", "org-good"), ("Encounter", "enc-dangling")}

    # a target stored by an earlier import is found: no warning
    _write(tmp_path / "later", "p.ndjson", {"resourceType": "Patient", "id": "nobody"})
    assert _import(fresh_database_url, tmp_path / "later").exit_code == 0
    again = _import(fresh_database_url, src / "a_encounters.ndjson", batch_size=batch_size, workers=workers)
    assert "warning:" not in again.stderr and "1 errors" in again.stdout


@pytest.mark.parametrize("fresh_database_url", BACKENDS, indirect=True)
def test_two_writing_processes_record_every_change_and_load_in_any_order(fresh_database_url, tmp_path):
    """40 Encounters in 2-resource transactions written by two processes, each naming by a
    conditional reference an Organization that comes after it in the files: every resource is
    stored once, its conditional reference resolved, and every create is in the change log
    (which subscriptions and the SATUSEHAT sync read) in commit order."""
    src = tmp_path / "in"
    encounters = [
        {
            "resourceType": "Encounter",
            "id": f"enc-{k}",
            "status": "finished",
            "class": AMB,
            "serviceProvider": {"reference": f"Organization?identifier={ORG}|o{k % 3}"},
        }
        for k in range(40)
    ]
    _write(src, "a_encounters.ndjson", *encounters)
    _write(
        src,
        "b_orgs.ndjson",
        *({"resourceType": "Organization", "id": f"org-{k}", "identifier": [{"system": ORG, "value": f"o{k}"}]} for k in range(3)),
    )
    result = _import(fresh_database_url, src, batch_size=2, workers=2)
    assert result.exit_code == 0, result.output
    assert "43 created, 0 existing, 0 errors" in result.stdout
    assert gc.get_freeze_count() == 0  # what the import froze for the collector is collectable again
    stored = _stored(fresh_database_url)
    for k in range(40):
        assert stored[("Encounter", f"enc-{k}")]["serviceProvider"] == {"reference": f"Organization/org-{k % 3}"}
    db = Database.from_url(fresh_database_url)
    try:
        with db.read() as conn:
            changes = [c for c in changelog.read_after(conn, 0, 10_000) if c.res_type in ("Encounter", "Organization")]
    finally:
        db.dispose()
    assert sorted((c.res_type, c.res_id, c.version, c.action) for c in changes) == sorted(
        [("Encounter", f"enc-{k}", 1, "create") for k in range(40)] + [("Organization", f"org-{k}", 1, "create") for k in range(3)]
    )
    assert [c.seq for c in changes] == sorted(c.seq for c in changes)
    # each Encounter committed after the Organization it names (others may come before or after)
    seq = {c.res_id: c.seq for c in changes}
    assert all(seq[f"org-{k % 3}"] < seq[f"enc-{k}"] for k in range(40))


@pytest.mark.slow
@pytest.mark.skipif(not SYNTHEA.is_dir(), reason="the shared Synthea sample is not on this machine")
@pytest.mark.parametrize("fresh_database_url", BACKENDS, indirect=True)
def test_the_synthea_sample_loads_with_no_error(fresh_database_url):
    files = sorted(SYNTHEA.glob("*.ndjson"))
    assert len(files) == 13
    result = _import(fresh_database_url, SYNTHEA)
    assert result.exit_code == 0, result.stderr[:3000]
    assert "7160 created, 0 existing, 0 errors" in result.stdout
    assert result.stderr.strip() == ""
    stored = _stored(fresh_database_url)
    clinical = {
        k: v for k, v in stored.items() if k[0] not in ("OperationDefinition", "SearchParameter", "CodeSystem", "ValueSet", "ConceptMap")
    }
    assert len(clinical) == 7160
    # every conditional reference was resolved, and every literal reference points at a stored resource
    text = "\n".join(json.dumps(v) for v in clinical.values())
    assert "?identifier=" not in text
    for resource in clinical.values():
        for ref in _references(resource):
            res_type, _, res_id = ref.partition("/")
            assert (res_type, res_id) in stored, (resource["resourceType"], resource["id"], ref)


def _references(node) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "reference" and isinstance(v, str)] + [r for v in node.values() for r in _references(v)]
    if isinstance(node, list):
        return [r for v in node for r in _references(v)]
    return []


# -- the order itself (import_order, no database) --------------------------------------------


def _node(res_type: str, res_id: str, *refs: str, ident: str | None = None) -> Node:
    resource: dict = {"resourceType": res_type, "id": res_id, "extension": [{"valueReference": {"reference": r}} for r in refs]}
    if ident is not None:
        resource["identifier"] = [{"system": "urn:x", "value": ident}]
    literal, conditional = import_order.references(resource)
    return Node(res_type, res_id, f"f:{res_id}", orjson.dumps(resource), literal, conditional, import_order.identifiers(resource))


def _batch_of(plan, nodes, size: int) -> dict[int, int]:
    return {i: n for n, batch in enumerate(import_order.batches(plan, nodes, size)) for i in batch}


def test_every_hard_dependency_is_committed_in_an_earlier_transaction():
    rng = random.Random(20)
    nodes = []
    for k in range(300):
        refs = [f"Organization?identifier=urn:x|{rng.randrange(300)}" for _ in range(rng.randrange(3))]
        refs += [f"Organization/o{rng.randrange(300)}" for _ in range(rng.randrange(3))]
        nodes.append(_node("Organization", f"o{k}", *refs, ident=str(k)))
    rng.shuffle(nodes)
    plan = import_order.plan(nodes)
    where = _batch_of(plan, nodes, 25)
    assert sorted(where) == list(range(len(nodes)))  # each node exactly once
    assert plan.second_pass and plan.placeholders  # the random graph has cycles
    second = set(plan.second_pass)
    for i, node in enumerate(nodes):
        stand_ins = set(plan.placeholders.get(i, {}).values())
        for j in plan.hard[i]:
            if j in stand_ins:
                assert i in second  # a stand-in is only ever a first pass
            else:
                assert where[j] < where[i] or (i in second and j in second), (node.res_id, nodes[j].res_id)
    assert all(len(batch) <= 25 for batch in import_order.batches(plan, nodes, 25))


def test_a_transaction_waits_for_exactly_what_it_would_find_committed_written_alone():
    """``prerequisites``: what a transaction needs committed before another process may write it
    (its nodes' hard dependencies, whole types, earlier copies of the same resource, and with
    ``serial_types`` every earlier transaction of its type); literal references need nothing."""
    rng = random.Random(11)
    nodes = []
    for k in range(300):
        refs = [f"Organization?identifier=urn:x|{rng.randrange(300)}" for _ in range(rng.randrange(3))]
        refs += [f"Organization/o{rng.randrange(300)}" for _ in range(rng.randrange(3))]
        refs += ["Patient?name=x"] if k % 50 == 0 else []
        nodes.append(_node("Organization", f"o{k}", *refs, ident=str(k)))
    nodes += [_node("Patient", f"p{k}") for k in range(20)] + [_node("Organization", "o7")]  # o7 again
    rng.shuffle(nodes)
    plan = import_order.plan(nodes)
    batches = list(import_order.batches(plan, nodes, 10))
    where = {i: b for b, batch in enumerate(batches) for i in batch}
    after = import_order.prerequisites(plan, nodes, batches)
    for b, need in enumerate(after):
        assert all(a < b for a in need)
    for i, node in enumerate(nodes):
        b = where[i]
        wanted = {where[j] for j in plan.hard[i] - set(plan.placeholders.get(i, {}).values()) if where[j] < b}
        wanted |= {where[j] for j, other in enumerate(nodes) if other.res_type in plan.hard_types[i] and where[j] < b}
        wanted |= {where[j] for j, other in enumerate(nodes) if other.key == node.key and where[j] < b}
        assert wanted <= after[b], node.res_id
    # nothing more than that: a transaction with none of these may be written at once
    needed = {
        where[i]
        for i in range(len(nodes))
        if plan.hard[i] - set(plan.placeholders.get(i, {}).values()) or plan.hard_types[i] or sum(n.key == nodes[i].key for n in nodes) > 1
    }
    assert any(not after[b] for b in range(1, len(batches)) if b not in needed)
    patients = [b for b, batch in enumerate(batches) if any(nodes[i].res_type == "Patient" for i in batch)]
    serial = import_order.prerequisites(plan, nodes, batches, frozenset({"Patient"}))
    for k, b in enumerate(patients):
        assert set(patients[:k]) <= serial[b]


def test_the_one_transaction_the_start_can_write_is_spread_over_the_workers():
    """A Synthea export: every transaction waits for the first (the Practitioners its Encounters
    name by identifier), which one worker wrote while the other waited (0.14 s of a 1.7 s import).
    ``spread_start`` splits it; every later transaction waits for each part, and each node's
    needs are still committed before it."""
    nodes = [_node("Practitioner", f"pr{k}", ident=f"n{k}") for k in range(40)]
    nodes += [_node("Encounter", f"e{k}", f"Practitioner?identifier=urn:x|n{k % 40}", f"Patient/p{k % 5}") for k in range(100)]
    nodes += [_node("Patient", f"p{k}") for k in range(5)]
    plan = import_order.plan(nodes)
    batches = list(import_order.batches(plan, nodes, 30))
    after = import_order.prerequisites(plan, nodes, batches)
    assert [b for b, need in enumerate(after) if not need] == [0]  # the start: one transaction
    spread, spread_after = import_order.spread_start(plan, nodes, batches, after, 2)
    assert sorted(i for batch in spread for i in batch) == list(range(len(nodes)))
    assert [b for b, need in enumerate(spread_after) if not need] == [0, 1]  # now one per worker
    assert sorted(spread[0] + spread[1]) == sorted(batches[0]) and abs(len(spread[0]) - len(spread[1])) <= 1
    where = {i: b for b, batch in enumerate(spread) for i in batch}
    for i in range(len(nodes)):
        for j in plan.hard[i]:
            assert where[j] in spread_after[where[i]], (nodes[i].res_id, nodes[j].res_id)
    # nothing to spread: one worker, or several transactions writable at the start
    assert import_order.spread_start(plan, nodes, batches, after, 1) == (batches, after)
    free = [set() for _ in after]
    assert import_order.spread_start(plan, nodes, batches, free, 2) == (batches, free)


def test_conditions_other_than_identifier_wait_for_the_whole_type_and_repeats_keep_their_order():
    nodes = [
        _node("Observation", "obs", "Patient?name=siti"),
        _node("Patient", "p1"),
        _node("Patient", "p2", "Patient/p1"),
        _node("Patient", "p1"),  # the same resource again, later in the files: written after the first
    ]
    plan = import_order.plan(nodes)
    where = _batch_of(plan, nodes, 100)
    assert where[0] > max(where[1], where[2], where[3])
    assert where[3] > where[1]
    assert plan.order.index(2) > plan.order.index(1)  # a literal target first as well (same transaction is fine)
    assert plan.second_pass == []


def test_identifier_conditions_match_like_a_search_would():
    terms = import_order._identifier_condition
    assert terms("identifier=urn:x|A1") == [("urn:x", "a1")]
    assert terms("identifier=A1") == [(None, "a1")]
    assert terms("identifier=urn:x|") == [("urn:x", None)]
    assert terms("identifier=urn:x|1,urn:y|2") == [("urn:x", "1"), ("urn:y", "2")]
    assert terms("identifier=urn:x|1&active=true") is None
    assert terms("name=x") is None
    a, b = _node("Practitioner", "a", ident="A1"), _node("Practitioner", "b", ident="b2")
    ref = _node("Encounter", "e", "Practitioner?identifier=urn%3Ax%7Ca1", "Practitioner?identifier=B2")
    plan = import_order.plan([ref, a, b])
    assert plan.hard[0] == {1, 2}


@pytest.mark.parametrize("batch_size, forked", [(5, False), (2, True)], ids=["one-transaction", "several"])
def test_workers_start_only_for_an_import_of_more_than_one_transaction(tmp_path, monkeypatch, batch_size, forked):
    """A file that fits one transaction is written by the importer itself: no zygote is forked to
    build models it would never use (~0.3-0.5 s for a file of 13 Patients)."""
    from fhir_server.service import import_workers

    started: list[int] = []
    real = import_workers.Workers

    def counted(count, open_writer, warm):
        started.append(count)
        return real(count, open_writer, warm)

    monkeypatch.setattr(import_workers, "Workers", counted)
    src = tmp_path / "in"
    _reverse_order_set(src)  # 5 resources
    result = _import(f"sqlite:///{tmp_path / 'db.sqlite3'}", src, batch_size=batch_size, workers=2)
    assert result.exit_code == 0, result.output
    assert "5 created, 0 existing, 0 errors" in result.stdout
    assert started == ([2] if forked else [])
