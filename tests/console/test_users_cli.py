"""``fhir-server users add|list|disable|set-role|reset-password`` and the password hashing behind it."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from fhir_server.auth import users
from fhir_server.cli import app
from fhir_server.storage.console_tables import console_users
from tests.conftest import BACKENDS

runner = CliRunner()


@pytest.mark.slow
@pytest.mark.parametrize("fresh_database_url", BACKENDS, indirect=True)
def test_users_add_list_disable(fresh_database_url):
    url = ["--database-url", fresh_database_url]
    early = runner.invoke(app, ["users", "list", *url])
    assert early.exit_code == 1 and "migrate" in early.output
    assert runner.invoke(app, ["migrate", *url]).exit_code == 0
    added = runner.invoke(app, ["users", "add", "siti", "--role", "clerk", "--name", "Siti Rahayu", "--password", "panjang-sekali-1", *url])
    assert added.exit_code == 0, added.output
    # the password arrives from a prompt (typed twice) when not given
    prompted = runner.invoke(app, ["users", "add", "budi", "--role", "viewer", *url], input="kata-sandi-budi\nkata-sandi-budi\n")
    assert prompted.exit_code == 0, prompted.output
    for bad, why in (
        (["siti", "--role", "clerk"], "already exists"),
        (["x1", "--role", "boss"], "role"),
        (["x2", "--role", "viewer"], "10"),
    ):
        r = runner.invoke(app, ["users", "add", *bad, "--password", "short" if why == "10" else "panjang-sekali-1", *url])
        assert r.exit_code == 2 and why in r.output, r.output
    listed = runner.invoke(app, ["users", "list", *url]).output
    assert "siti\tclerk\tactive\tSiti Rahayu" in listed and "budi\tviewer\tactive" in listed
    engine = sa.create_engine(fresh_database_url)
    with engine.connect() as conn:
        stored = conn.execute(sa.select(console_users.c.password_hash).where(console_users.c.username == "siti")).scalar_one()
    assert stored.startswith("scrypt$") and "panjang" not in stored
    assert runner.invoke(app, ["users", "disable", "siti", *url]).exit_code == 0
    assert "siti\tclerk\tdisabled" in runner.invoke(app, ["users", "list", *url]).output
    assert runner.invoke(app, ["users", "disable", "nobody", *url]).exit_code == 1
    # a new role; a new password (the old one stops working); both refuse unknown users and bad values
    assert runner.invoke(app, ["users", "set-role", "budi", "--role", "clerk", *url]).exit_code == 0
    assert runner.invoke(app, ["users", "set-role", "budi", "--role", "boss", *url]).exit_code == 2
    assert runner.invoke(app, ["users", "set-role", "nobody", "--role", "clerk", *url]).exit_code == 1
    reset = runner.invoke(app, ["users", "reset-password", "budi", *url], input="kata-sandi-baru\nkata-sandi-baru\n")
    assert reset.exit_code == 0, reset.output
    assert runner.invoke(app, ["users", "reset-password", "budi", "--password", "short", *url]).exit_code == 2
    assert runner.invoke(app, ["users", "reset-password", "nobody", "--password", "panjang-sekali-1", *url]).exit_code == 1
    with engine.begin() as conn:
        assert users.authenticate(conn, "siti", "panjang-sekali-1") == (None, "invalid")
        assert users.authenticate(conn, "budi", "kata-sandi-budi") == (None, "invalid")
        user, _ = users.authenticate(conn, "budi", "kata-sandi-baru")
    engine.dispose()
    assert user is not None and user.client_id == "console:budi" and user.scopes.allows("Patient", "create")
    assert not user.scopes.allows("Patient", "delete")


def test_roles_map_onto_the_api_scopes():
    viewer, clerk, admin = (users.User(r, r, r, True, 0).scopes for r in ("viewer", "clerk", "admin"))
    assert viewer.allows("Patient", "read") and viewer.allows("Patient", "search") and not viewer.allows("Patient", "update")
    assert clerk.allows("Patient", "create") and clerk.allows("Encounter", "update") and not clerk.allows("Patient", "delete")
    assert not clerk.allows("AuditEvent", "read")
    assert admin.allows("Patient", "delete") and admin.allows("AuditEvent", "search") and not admin.allows("AuditEvent", "create")
    assert not viewer.has_feature("system/satusehat.read")
    assert clerk.has_feature("system/satusehat.read") and not clerk.has_feature("system/satusehat.write")
    assert admin.has_feature("system/satusehat.read") and admin.has_feature("system/satusehat.write")
