"""Patient/$merge rewrites the references no search parameter covers too: in extensions (at any
depth, relative or absolute) and in contained resources; $unmerge turns them back. On SQLite and
PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa

from tests.mpi.helpers import SITI, patient
from tests.mpi.test_merge_http import AMB, create, op, out, read, ref

EXT = "https://example.org/fhir/StructureDefinition/related-patient"


def _referrers(client, source: str) -> dict[str, str]:
    """Resources pointing at ``source`` only where no search parameter looks."""
    observation = create(
        client,
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {
                "text": "Tekanan darah",
                # an extension inside an element, and one nested in another
                "extension": [{"url": EXT, "extension": [{"url": "who", "valueReference": {"reference": f"Patient/{source}"}}]}],
            },
            "extension": [{"url": EXT, "valueReference": {"reference": f"Patient/{source}", "display": "Siti"}}],
        },
    )
    encounter = create(
        client,
        {
            "resourceType": "Encounter",
            "status": "finished",
            "class": AMB,
            "extension": [{"url": EXT, "valueReference": {"reference": f"http://testserver/fhir/Patient/{source}"}}],
        },
    )
    other = create(client, patient("Dewi Lestari", birth="1992-01-01", gender="female"))
    condition = create(
        client,
        {
            "resourceType": "Condition",
            "contained": [
                {"resourceType": "RelatedPerson", "id": "rp", "patient": {"reference": f"Patient/{source}"}, "name": [{"text": "Abdullah"}]}
            ],
            "asserter": {"reference": "#rp"},
            "code": {"text": "Demam"},
            "subject": {"reference": f"Patient/{other}"},
        },
    )
    return {"Observation": observation, "Encounter": encounter, "Condition": condition}


def _references(resource) -> list[str]:
    found, stack = [], [resource]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if isinstance(node.get("reference"), str):
                found.append(node["reference"])
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def test_merge_rewrites_references_in_extensions_and_contained_resources(client):
    target = create(client, SITI)
    source = create(client, patient("SITI AMINAH", birth="1990-06-05", gender="female"))
    referrers = _referrers(client, source)

    preview = op(client, "merge", ref("source-patient", source), ref("target-patient", target), {"name": "preview", "valueBoolean": True})
    assert "Merge would update 5 resources" in out(preview, "outcome")["issue"][-1]["diagnostics"]

    merged = op(client, "merge", ref("source-patient", source), ref("target-patient", target))
    assert merged.status_code == 200, merged.text
    obs = read(client, "Observation", referrers["Observation"])
    assert obs["extension"][0]["valueReference"] == {"reference": f"Patient/{target}", "display": "Siti"}
    assert obs["code"]["extension"][0]["extension"][0]["valueReference"] == {"reference": f"Patient/{target}"}
    enc = read(client, "Encounter", referrers["Encounter"])
    assert enc["extension"][0]["valueReference"] == {"reference": f"http://testserver/fhir/Patient/{target}"}
    cond = read(client, "Condition", referrers["Condition"])
    assert cond["contained"][0]["patient"] == {"reference": f"Patient/{target}"}
    assert cond["asserter"] == {"reference": "#rp"}
    for res_type, res_id in referrers.items():
        assert not any(source in r for r in _references(read(client, res_type, res_id))), res_type
    provenance_id = out(merged, "outcome")["issue"][-1]["diagnostics"].split("Provenance/")[1].split(" ")[0]
    listed = {t["reference"].split("/_history/")[0] for t in read(client, "Provenance", provenance_id)["target"]}
    assert {f"{t}/{i}" for t, i in referrers.items()} <= listed

    undone = op(client, "unmerge", {"name": "provenance", "valueReference": {"reference": f"Provenance/{provenance_id}"}})
    assert undone.status_code == 200, undone.text
    obs = read(client, "Observation", referrers["Observation"])
    assert obs["extension"][0]["valueReference"]["reference"] == f"Patient/{source}"
    assert read(client, "Condition", referrers["Condition"])["contained"][0]["patient"] == {"reference": f"Patient/{source}"}


def test_references_outside_search_parameters_are_indexed_but_not_searchable(client):
    source = create(client, patient("SITI AMINAH", birth="1990-06-05", gender="female"))
    referrers = _referrers(client, source)
    engine = client.app.state.fhir.db.engine
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT r.res_type, x.target_id, x.url FROM idx_reference x JOIN resources r ON r.pk = x.resource_pk "
                "WHERE x.param = '-other' ORDER BY r.res_type"
            )
        ).all()
    assert [(t, i, u) for t, i, u in rows] == [
        ("Condition", source, None),  # the contained RelatedPerson's patient
        ("Encounter", None, f"http://testserver/fhir/Patient/{source}"),
        ("Observation", source, None),  # twice in the resource, one row
    ]
    # _revinclude=* follows search parameters only, not the extensions and contained resources
    bundle = client.get(f"/fhir/Patient?_id={source}&_revinclude=*").json()
    assert [e["resource"]["resourceType"] for e in bundle["entry"]] == ["Patient"]
    searched = client.get(f"/fhir/Observation?-other=Patient/{source}")  # not a parameter: ignored (lenient), never a 500
    assert searched.status_code == 200 and "-other" not in searched.json()["link"][0]["url"]
    assert referrers


def test_the_migration_indexes_references_of_resources_stored_before(client):
    """0018 fills the rows for what was stored before it: simulated by deleting them."""
    import importlib.util
    from pathlib import Path

    from alembic.migration import MigrationContext
    from alembic.operations import Operations

    source = create(client, patient("SITI AMINAH", birth="1990-06-05", gender="female"))
    _referrers(client, source)
    engine = client.app.state.fhir.db.engine
    with engine.begin() as conn:
        before = conn.execute(sa.text("SELECT resource_pk, target_id, url FROM idx_reference WHERE param = '-other' ORDER BY 1")).all()
        conn.execute(sa.text("DELETE FROM idx_reference WHERE param = '-other'"))
        path = Path(__file__).parents[2] / "alembic" / "versions" / "0018_other_references.py"
        spec = importlib.util.spec_from_file_location("migration_0018", path)
        assert spec is not None and spec.loader is not None
        migration = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(migration)
        with Operations.context(MigrationContext.configure(conn)):
            migration.upgrade()
        after = conn.execute(sa.text("SELECT resource_pk, target_id, url FROM idx_reference WHERE param = '-other' ORDER BY 1")).all()
    assert len(before) == 3 and after == before
