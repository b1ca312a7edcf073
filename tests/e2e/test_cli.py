"""The command line: migrate, reindex."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from fhir_server.cli import app
from fhir_server.storage.index_tables import idx_token
from tests.conftest import BACKENDS

runner = CliRunner()


@pytest.mark.slow
@pytest.mark.parametrize("fresh_database_url", BACKENDS, indirect=True)
def test_migrate_then_reindex_rebuilds_lost_index_rows(fresh_database_url):
    from fhir_server.config import Settings
    from fhir_server.state import build_state

    assert runner.invoke(app, ["migrate", "--database-url", fresh_database_url]).exit_code == 0
    state = build_state(Settings(database_url=fresh_database_url))
    try:
        pid = state.resources.create("Patient", {"resourceType": "Patient", "gender": "male"}).stored.res_id
        with state.db.write() as conn:
            conn.execute(sa.delete(idx_token))
        assert state.search.run("http://x/fhir", "Patient", [("gender", "male")], strict=True).matches == []
        result = runner.invoke(app, ["reindex", "--type", "Patient", "--database-url", fresh_database_url])
        assert result.exit_code == 0, result.output
        assert "reindexed 1 resources" in result.output
        found = state.search.run("http://x/fhir", "Patient", [("gender", "male")], strict=True).matches
        assert [i for _, i, _ in found] == [pid]
    finally:
        state.db.dispose()


def test_reindex_refuses_an_unknown_type(tmp_path):
    result = runner.invoke(app, ["reindex", "--type", "Nope", "--database-url", f"sqlite:///{tmp_path / 'x.db'}"])
    assert result.exit_code == 2


FIXTURES = __import__("pathlib").Path(__file__).resolve().parents[1] / "mappings" / "fixtures"


def test_map_dukcapil_prints_fhir_and_reverse_prints_native(tmp_path):
    import json

    out = runner.invoke(app, ["map", "dukcapil", str(FIXTURES / "dukcapil_call_nik.json")])
    assert out.exit_code == 0, out.output
    fhir = json.loads(out.stdout)
    patients = (
        [fhir]
        if fhir["resourceType"] == "Patient"
        else [e["resource"] for e in fhir["entry"] if e["resource"]["resourceType"] == "Patient"]
    )
    assert patients[0]["identifier"][0]["value"] == "3204154506900003"
    path = tmp_path / "patient.json"
    path.write_text(out.stdout)
    back = runner.invoke(app, ["map", "dukcapil", str(path), "--reverse"])
    assert back.exit_code == 0, back.output
    assert str(json.loads(back.stdout)["content"][0]["NIK"]) == "3204154506900003"


def test_map_reads_stdin_and_reports_bad_input_on_stderr():
    ok = runner.invoke(app, ["map", "sep", "-"], input=(FIXTURES / "sep_response.json").read_text())
    assert ok.exit_code == 0, ok.output
    assert '"resourceType": "Bundle"' in ok.stdout or '"resourceType": "Encounter"' in ok.stdout
    bad = runner.invoke(app, ["map", "dukcapil", "-"], input='{"content": [{"NIK": "1"}]}')
    assert bad.exit_code == 1
    assert "OperationOutcome" in bad.stderr and "NIK" in bad.stderr
    assert runner.invoke(app, ["map", "nonsense", "-"], input="{}").exit_code == 2


def test_map_refuses_a_repeated_property_name():
    """The same rule as every JSON a client sends (jsonio.loads_client): the last NIK would win."""
    dup = runner.invoke(app, ["map", "dukcapil", "-"], input='{"content": [{"NIK": "3204154506900003", "NIK": "3204154506900004"}]}')
    assert dup.exit_code == 1
    assert "OperationOutcome" in dup.stderr and "'NIK' appears more than once" in dup.stderr


def test_terminology_lookup_expand_translate():
    import json

    look = runner.invoke(app, ["terminology", "lookup", "3204152003"])
    assert look.exit_code == 0, look.output
    assert any(p.get("valueString") == "Warnasari" for p in json.loads(look.stdout)["parameter"])
    exp = runner.invoke(app, ["terminology", "expand", "https://fhir-server.id/ValueSet/kemendagri-wilayah-province", "--filter", "jawa"])
    assert exp.exit_code == 0 and len(json.loads(exp.stdout)["expansion"]["contains"]) >= 3
    tr = runner.invoke(
        app,
        [
            "terminology",
            "translate",
            "2",
            "--system",
            "https://fhir-server.id/CodeSystem/dukcapil-status-kawin",
            "--url",
            "https://fhir-server.id/ConceptMap/dukcapil-status-kawin-to-v3-marital-status",
        ],
    )
    assert tr.exit_code == 0 and '"M"' in tr.stdout
    assert runner.invoke(app, ["terminology", "lookup", "0000000000"]).exit_code == 1


def test_serve_refuses_an_open_server_on_a_network_address_by_default(tmp_path, monkeypatch):
    monkeypatch.delenv("FHIR_AUTH_ALLOW_OPEN", raising=False)
    monkeypatch.delenv("FHIR_AUTH", raising=False)
    result = runner.invoke(app, ["serve", "--host", "0.0.0.0", "--database-url", f"sqlite:///{tmp_path / 'x.db'}"])
    assert result.exit_code == 2
    assert "refusing" in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("fresh_database_url", BACKENDS, indirect=True)
def test_audit_purge(fresh_database_url):
    from fhir_server.audit.events import AuditRecord
    from fhir_server.audit.recorder import record_in
    from fhir_server.storage.db import Database

    assert runner.invoke(app, ["migrate", "--database-url", fresh_database_url]).exit_code == 0
    db = Database.from_url(fresh_database_url)
    try:
        with db.write() as conn:
            record_in(conn, AuditRecord(interaction="read", status=200, res_type="Patient", res_id="a", recorded_us=1_000_000))
            record_in(conn, AuditRecord(interaction="read", status=200, res_type="Patient", res_id="b"))
    finally:
        db.dispose()
    result = runner.invoke(app, ["audit", "purge", "--before", "2000-01-01", "--database-url", fresh_database_url])
    assert result.exit_code == 0, result.output
    assert "1 audit events" in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("fresh_database_url", BACKENDS, indirect=True)
def test_changes_purge_keeps_the_retention_period(fresh_database_url):
    from fhir_server.storage import changelog
    from fhir_server.storage.db import Database
    from fhir_server.timeutil import now_us

    assert runner.invoke(app, ["migrate", "--database-url", fresh_database_url]).exit_code == 0
    db = Database.from_url(fresh_database_url)
    try:
        with db.write() as conn:
            changelog.record(conn, "Patient", "old", 1, "create", now_us() - 10 * 86_400_000_000)
            changelog.record(conn, "Patient", "new", 1, "create", now_us())
        result = runner.invoke(app, ["changes", "purge", "--days", "7", "--database-url", fresh_database_url])
        assert result.exit_code == 0, result.output
        assert "1 change-log rows" in result.stdout
        with db.read() as conn:
            assert [c.res_id for c in changelog.read_after(conn, 0, limit=10_000) if c.res_type == "Patient"] == ["new"]
        assert runner.invoke(app, ["changes", "purge", "--days", "-1", "--database-url", fresh_database_url]).exit_code == 2
    finally:
        db.dispose()
