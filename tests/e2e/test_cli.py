"""The command line: migrate, reindex."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from fhir_server.cli import app
from fhir_server.storage.index_tables import idx_token
from tests.conftest import BACKENDS

runner = CliRunner()


@pytest.mark.parametrize("fresh_database_url", BACKENDS, indirect=True)
def test_migrate_then_reindex_rebuilds_lost_index_rows(fresh_database_url):
    from fhir_server.app import build_state
    from fhir_server.config import Settings

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
