"""``fhir-server clients add|list|revoke`` through typer's CliRunner."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from fhir_server.auth.cli import clients_app
from fhir_server.auth.clients import get_client, verify_secret

from .keyutil import public_jwk, public_pem

runner = CliRunner()


def _url(db) -> str:
    return db.engine.url.render_as_string(hide_password=False)


def _invoke(db, *args):
    return runner.invoke(clients_app, [*args, "--database-url", _url(db)])


def test_add_prints_the_id_and_secret_once(db):
    result = _invoke(db, "add", "--name", "RS Harapan", "--scope", "system/*.rs", "--organization", "10000004")
    assert result.exit_code == 0, result.output
    lines = dict(line.split(":", 1) for line in result.output.splitlines() if line.startswith("client_"))
    client_id, secret = lines["client_id"].strip(), lines["client_secret"].strip()
    with db.read() as conn:
        client = get_client(conn, client_id)
    assert client.name == "RS Harapan" and client.organization_id == "10000004"
    assert verify_secret(secret, client.secret_hash)


def test_add_json_output_and_repeated_scopes(db):
    result = _invoke(
        db, "add", "--name", "X", "--scope", "system/Patient.rs", "--scope", "system/Encounter.cruds system/AuditEvent.rs", "--json"
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    with db.read() as conn:
        client = get_client(conn, out["client_id"])
    assert client.scopes == ("system/Patient.rs", "system/Encounter.cruds", "system/AuditEvent.rs")
    assert out["client_secret"]


@pytest.mark.parametrize("kind", ["jwks", "pem"])
def test_add_with_keys_has_no_secret_by_default(db, tmp_path, rsa_key, kind):
    path = tmp_path / "keys"
    path.write_text(json.dumps({"keys": [public_jwk(rsa_key, "k1")]}) if kind == "jwks" else public_pem(rsa_key))
    result = _invoke(db, "add", "--name", "Backend", "--scope", "system/*.read", "--jwks-file", str(path), "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["client_secret"] is None
    with db.read() as conn:
        assert get_client(conn, out["client_id"]).auth_methods == ("private_key_jwt",)
    both = _invoke(db, "add", "--name", "Both", "--scope", "system/*.read", "--jwks-file", str(path), "--secret", "--json")
    assert json.loads(both.output)["client_secret"]


def test_add_refuses_bad_scopes_with_a_message(db):
    result = _invoke(db, "add", "--name", "X", "--scope", "patient/*.read")
    assert result.exit_code == 2
    assert "only system/ scopes" in result.output


def test_add_refuses_a_private_key_file(db, tmp_path, rsa_key):
    from cryptography.hazmat.primitives import serialization

    path = tmp_path / "private.pem"
    path.write_bytes(rsa_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    result = _invoke(db, "add", "--name", "X", "--scope", "system/*.rs", "--jwks-file", str(path))
    assert result.exit_code == 2 and "private key" in result.output


def test_list_shows_clients_without_secrets(db):
    out = json.loads(_invoke(db, "add", "--name", "Puskesmas Ciracas", "--scope", "system/*.rs", "--json").output)
    result = _invoke(db, "list")
    assert result.exit_code == 0, result.output
    assert out["client_id"] in result.output and "Puskesmas Ciracas" in result.output
    assert "system/*.rs" in result.output and "active" in result.output
    assert out["client_secret"] not in result.output and "scrypt" not in result.output


def test_revoke_marks_the_client_revoked(db):
    out = json.loads(_invoke(db, "add", "--name", "X", "--scope", "system/*.rs", "--json").output)
    result = _invoke(db, "revoke", out["client_id"])
    assert result.exit_code == 0 and "revoked" in result.output
    with db.read() as conn:
        assert not get_client(conn, out["client_id"]).active
    assert "revoked" in _invoke(db, "list").output


def test_revoke_unknown_client_fails(db):
    result = _invoke(db, "revoke", "nobody")
    assert result.exit_code == 1 and "no client" in result.output


def test_unmigrated_database_asks_for_migrate(tmp_path):
    result = runner.invoke(clients_app, ["list", "--database-url", f"sqlite:///{tmp_path / 'empty.sqlite3'}"])
    assert result.exit_code == 1 and "fhir-server migrate" in result.output


def test_generated_client_ids_never_look_like_options(monkeypatch):
    """``clients revoke <id>`` takes the id as an argument: one starting with '-' was an option."""
    from fhir_server.auth import clients

    drawn = iter(["-startsWithDash", "_fine-id"])
    monkeypatch.setattr(clients.secrets, "token_urlsafe", lambda n: next(drawn))
    assert clients.new_client_id() == "_fine-id"
