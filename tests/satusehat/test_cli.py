"""``fhir-server satusehat status|failed|retry|sync`` and ``facilities add|list|remove`` on a
database of both backends, the sync command against the simulator (never a real host)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from fhir_server.cli import app as cli
from tests.satusehat.conftest import base_records, condition, encounter, observation, put
from tests.satusehat.simulator import CLIENT_ID, CLIENT_SECRET, ORG

pytestmark = pytest.mark.slow  # a fresh database per backend


def _env(sim_url: str) -> dict[str, str]:
    return {
        "FHIR_SATUSEHAT_URL": sim_url,
        "FHIR_SATUSEHAT_CLIENT_ID": CLIENT_ID,
        "FHIR_SATUSEHAT_CLIENT_SECRET": CLIENT_SECRET,
        "FHIR_SATUSEHAT_ORGANIZATION_ID": ORG,
        "FHIR_SATUSEHAT_RETRY_BASE": "0.05",
        "FHIR_SATUSEHAT_RETRY_MAX": "0.2",
    }


def test_sync_status_failed_and_retry(quiet, sim):
    client, s = quiet
    url = s.database_url
    base_records(client)
    put(client, encounter())
    put(client, condition("c1", code="X99.9"))
    put(client, observation("o1"))
    run = CliRunner()
    synced = run.invoke(cli, ["satusehat", "sync", "--database-url", url, "--timeout", "60"], env=_env(sim.url))
    assert synced.exit_code == 0, synced.output
    assert "sending to SATUSEHAT" in synced.output and "pending: 0" in synced.output
    assert CLIENT_SECRET not in synced.output
    assert len(sim.resources("Encounter")) == 1 and len(sim.resources("Observation")) == 1
    status = run.invoke(cli, ["satusehat", "status", "--database-url", url])
    assert status.exit_code == 0 and "synced=3" in status.output and "failed=1" in status.output, status.output
    failed = run.invoke(cli, ["satusehat", "failed", "--json", "--database-url", url])
    row = json.loads(failed.output.splitlines()[0])
    assert row["resource"] == "Condition/c1" and row["rule"] == "10035" and row["outcome"]["resourceType"] == "OperationOutcome"
    retried = run.invoke(cli, ["satusehat", "retry", "Condition/c1", "--database-url", url])
    assert retried.exit_code == 0 and "1 resource(s)" in retried.output
    assert "pending=1" in run.invoke(cli, ["satusehat", "status", "--database-url", url]).output
    assert run.invoke(cli, ["satusehat", "retry", "Condition/nope", "--database-url", url]).exit_code == 1


def test_sync_is_off_without_settings(quiet):
    _, s = quiet
    r = CliRunner().invoke(cli, ["satusehat", "sync", "--database-url", s.database_url], env={"FHIR_SATUSEHAT_URL": ""})
    assert r.exit_code == 1 and "off" in r.output


def test_facilities_never_print_their_secret(quiet):
    _, s = quiet
    url = s.database_url
    run = CliRunner()
    args = ["satusehat", "facilities", "add", "--name", "pkm-ciracas", "--organization", "org1", "--organization-id", "100000002"]
    added = run.invoke(cli, [*args, "--url", "sandbox", "--client-id", "cid", "--database-url", url], input="very-secret\n")
    assert added.exit_code == 0, added.output
    assert "very-secret" not in added.output
    listed = run.invoke(cli, ["satusehat", "facilities", "list", "--database-url", url])
    assert "pkm-ciracas" in listed.output and "https://api-satusehat-stg.dto.kemkes.go.id" in listed.output
    assert "very-secret" not in listed.output
    again = run.invoke(cli, [*args, "--client-id", "x", "--client-secret", "y", "--database-url", url])
    assert again.exit_code == 1
    bad = run.invoke(
        cli,
        [
            "satusehat",
            "facilities",
            "add",
            "--name",
            "b",
            "--organization",
            "o2",
            "--organization-id",
            "1",
            "--url",
            "ftp://x",
            "--client-id",
            "c",
            "--client-secret",
            "s",
            "--database-url",
            url,
        ],
    )
    assert bad.exit_code == 2
    assert run.invoke(cli, ["satusehat", "facilities", "remove", "pkm-ciracas", "--database-url", url]).exit_code == 0
    assert run.invoke(cli, ["satusehat", "facilities", "remove", "pkm-ciracas", "--database-url", url]).exit_code == 1
