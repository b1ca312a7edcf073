"""Start-up problems of ``fhir-server``: one clear line saying what to do, exit status 1, never a
traceback. The CLI runs as a subprocess, as an operator runs it.

A PostgreSQL URL naming a database that does not exist printed a 60-line traceback (issue 20);
so did a refused connection, a URL that is not one, an unwritable SQLite path and a bad
``FHIR_*`` value. ``--create-database`` / ``FHIR_CREATE_DATABASE=true`` creates a missing
database (PostgreSQL) or the folder of a SQLite file.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tests.conftest import POSTGRES_URL
from tests.e2e.server import ServerProcess

needs_postgres = pytest.mark.skipif(not POSTGRES_URL, reason="FHIR_TEST_POSTGRES_URL is not set")


def fhir_server(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fhir_server.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={**os.environ, "FHIR_AUTH": "none", **(env or {})},
    )


def assert_one_clear_line(result: subprocess.CompletedProcess[str], *expected: str) -> str:
    """Exit status 1 and exactly one line on stderr containing every ``expected`` text."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    assert len(lines) == 1, result.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def _pg_url(database: str) -> str:
    return sa.make_url(POSTGRES_URL).set(database=database).render_as_string(hide_password=False)


@pytest.fixture
def missing_pg_database() -> Iterator[str]:
    """The name of a PostgreSQL database that does not exist (dropped after, if a test created it)."""
    name = f"fhir_missing_{uuid.uuid4().hex[:10]}"
    yield name
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


def _database_exists(name: str) -> bool:
    admin = sa.create_engine(POSTGRES_URL, poolclass=sa.NullPool)
    try:
        with admin.connect() as conn:
            return conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first() is not None
    finally:
        admin.dispose()


@needs_postgres
@pytest.mark.parametrize("command", ["serve", "migrate"])
def test_a_missing_postgres_database_is_one_line(missing_pg_database, command):
    result = fhir_server(command, "--database-url", _pg_url(missing_pg_database))
    line = assert_one_clear_line(result, f'"{missing_pg_database}" does not exist', "--create-database", "FHIR_CREATE_DATABASE")
    assert "createdb" in line
    assert not _database_exists(missing_pg_database)


@needs_postgres
def test_migrate_create_database_creates_it(missing_pg_database):
    result = fhir_server("migrate", "--create-database", "--database-url", _pg_url(missing_pg_database))
    assert result.returncode == 0, result.stderr
    assert _database_exists(missing_pg_database)
    again = fhir_server("migrate", "--create-database", "--database-url", _pg_url(missing_pg_database))
    assert again.returncode == 0, again.stderr  # it exists now: nothing to create


@needs_postgres
@pytest.mark.slow  # a real server process
def test_serve_creates_the_database_with_the_environment_variable(missing_pg_database, tmp_path):
    with ServerProcess(_pg_url(missing_pg_database), log=tmp_path / "server.log", env={"FHIR_CREATE_DATABASE": "true"}) as server:
        assert httpx.get(f"{server.base}/metadata", timeout=60).status_code == 200
    assert _database_exists(missing_pg_database)


@needs_postgres
def test_a_wrong_postgres_user_is_one_line():
    url = sa.make_url(POSTGRES_URL).set(username=f"nobody_{uuid.uuid4().hex[:6]}").render_as_string(hide_password=False)
    assert_one_clear_line(fhir_server("migrate", "--database-url", url), "PostgreSQL", "user")


def test_a_refused_connection_is_one_line():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = fhir_server("serve", "--database-url", f"postgresql+psycopg://postgres@127.0.0.1:{port}/fhir")
    assert_one_clear_line(result, f"127.0.0.1:{port}", "running")


@pytest.mark.parametrize("url", ["notaurl", "foo://bar/x", "mysql://u@h/db"])
def test_a_url_that_is_not_a_supported_database_is_one_line(url):
    assert_one_clear_line(fhir_server("migrate", "--database-url", url), "sqlite:///", "postgresql+psycopg://")


def test_a_sqlite_folder_that_does_not_exist_is_one_line_then_created_on_request(tmp_path):
    path = tmp_path / "not" / "yet" / "fhir.sqlite3"
    assert_one_clear_line(fhir_server("migrate", "--database-url", f"sqlite:///{path}"), str(path.parent), "--create-database")
    assert not path.parent.exists()
    created = fhir_server("migrate", "--database-url", f"sqlite:///{path}", env={"FHIR_CREATE_DATABASE": "true"})
    assert created.returncode == 0, created.stderr
    assert path.exists()


def test_an_unwritable_sqlite_path_is_one_line(tmp_path):
    """Its folder is a file: nothing can be created there, not even with --create-database (and
    running as root, as CI does, permission bits would not stop it)."""
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = fhir_server("serve", "--create-database", "--database-url", f"sqlite:///{blocker / 'fhir.sqlite3'}")
    assert_one_clear_line(result, str(blocker))


def test_a_port_in_use_is_one_line(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        result = fhir_server("serve", "--port", str(port), "--database-url", f"sqlite:///{tmp_path / 'fhir.sqlite3'}")
    assert_one_clear_line(result, f"127.0.0.1:{port}", "address already in use", "--port")
    assert not (tmp_path / "fhir.sqlite3").exists()  # refused before touching the database


@pytest.mark.parametrize(("name", "value"), [("FHIR_POOL_SIZE", "ten"), ("FHIR_STATEMENT_TIMEOUT", "30s")])
def test_a_bad_setting_is_one_line(tmp_path, name, value):
    result = fhir_server("serve", "--database-url", f"sqlite:///{tmp_path / 'fhir.sqlite3'}", env={name: value})
    assert_one_clear_line(result, name, repr(value))


@pytest.mark.parametrize("port", ["99999", "0", "-1"])
def test_a_port_out_of_range_is_refused_not_left_hanging(tmp_path, port):
    """``--port 99999`` started a server that listened nowhere and never ended."""
    result = fhir_server("serve", "--port", port, "--database-url", f"sqlite:///{tmp_path / 'fhir.sqlite3'}")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "--port" in result.stderr
    assert not (tmp_path / "fhir.sqlite3").exists()


def test_an_export_folder_that_cannot_be_written_is_one_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    url = f"sqlite:///{tmp_path / 'fhir.sqlite3'}"
    assert fhir_server("migrate", "--database-url", url).returncode == 0
    result = fhir_server("export", str(blocker / "out"), "--database-url", url)
    assert_one_clear_line(result, "cannot write the export to", str(blocker / "out"))
    unknown = fhir_server("export", str(tmp_path / "out"), "--type", "Pasien", "--database-url", url)
    assert unknown.returncode == 2 and "'Pasien' is not an R4 resource type" in unknown.stderr
