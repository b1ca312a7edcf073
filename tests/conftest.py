"""Fixtures: every storage-touching test runs on SQLite and, when
FHIR_TEST_POSTGRES_URL is set (CI sets it), on PostgreSQL in a schema of its own."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from fhir_server.app import create_app
from fhir_server.config import Settings
from fhir_server.storage.tables import metadata

if TYPE_CHECKING:
    from fhir_server.storage.db import Database

POSTGRES_URL = os.environ.get("FHIR_TEST_POSTGRES_URL", "")
BACKENDS = ["sqlite"] + (["postgresql"] if POSTGRES_URL else [])


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """``-n auto`` (addopts): no workers for a run of named tests (``pytest path::test``), where
    starting them costs more than they save; otherwise one per core, up to two. Every worker
    has its own session databases: SQLite files in its own temporary folder, PostgreSQL schemas
    of random names."""
    if config.args and all("::" in arg for arg in config.args):
        return 0
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None  # xdist's own answer: that number
    # at most two (the CI machine's cores, and what was measured): each worker holds connection
    # pools of its own, and PostgreSQL allows 100 connections by default, shared by every test run
    return min(len(os.sched_getaffinity(0)), 2)


def _with_search_path(url: str, schema: str) -> str:
    # synchronous_commit=off: a commit returns before its WAL reaches the disk, which only a crash
    # of the PostgreSQL server itself (no test causes one) could tell; a fresh app's seeding, 541
    # transactions, took 2-4 times less with it on this machine (7-12 s before, under load)
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options={quote(f'-csearch_path={schema} -csynchronous_commit=off')}"


class PgSchema:
    """A throw-away PostgreSQL schema; ``url`` points every connection at it."""

    def __init__(self) -> None:
        self.name = f"t_{uuid.uuid4().hex[:12]}"
        self.admin = sa.create_engine(POSTGRES_URL)
        with self.admin.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{self.name}"')
        self.url = _with_search_path(POSTGRES_URL, self.name)

    def drop(self) -> None:
        with self.admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{self.name}" CASCADE')
        self.admin.dispose()


@contextmanager
def database(backend: str, folder: Path) -> Iterator[str]:
    """The URL of an empty database: a SQLite file in ``folder`` or a PostgreSQL schema (dropped after)."""
    if backend == "sqlite":
        yield f"sqlite:///{folder / 'fhir.sqlite3'}"
        return
    schema = PgSchema()
    try:
        yield schema.url
    finally:
        schema.drop()


def index_definition(engine: sa.Engine, name: str) -> str | None:
    """The ``CREATE INDEX`` text of the index ``name`` in ``engine``'s schema, or None."""
    sql = (
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = :n"
        if engine.dialect.name == "sqlite"
        else "SELECT indexdef FROM pg_indexes WHERE indexname = :n AND schemaname = current_schema()"
    )
    with engine.connect() as conn:
        return conn.execute(sa.text(sql), {"n": name}).scalar()


@contextmanager
def migrated_database(backend: str, folder: Path) -> Iterator[Database]:
    """A migrated database of ``backend`` as a :class:`Database` (disposed and dropped after)."""
    from fhir_server.storage import migrate
    from fhir_server.storage.db import Database

    with database(backend, folder) as url:
        db = Database.from_url(url, pool_size=2)
        migrate.upgrade(db.engine)
        try:
            yield db
        finally:
            db.dispose()


def put_resource(client: TestClient, resource: dict, **headers: str) -> dict:
    """PUT ``resource`` at its id as FHIR JSON (with ``headers``); asserts 200 or 201; the answer."""
    import orjson

    r = client.put(
        f"/fhir/{resource['resourceType']}/{resource['id']}",
        content=orjson.dumps(resource),
        headers={"Content-Type": "application/fhir+json", **headers},
    )
    assert r.status_code in (200, 201), r.text
    return r.json()


def match_ids(client: TestClient, url: str, *, typed: bool = False, **headers: str) -> list[str]:
    """The ids (``Type/id`` when ``typed``) of the matches of the search ``url``, sorted; asserts 200."""
    r = client.get(url, headers=headers)
    assert r.status_code == 200, r.text
    found = [e["resource"] for e in r.json().get("entry", []) if e["search"]["mode"] == "match"]
    return sorted(f"{m['resourceType']}/{m['id']}" if typed else m["id"] for m in found)


def store_raw(engine: sa.Engine, resource: dict) -> None:
    """Store ``resource`` as version 1 straight into ``resources``, indexing nothing: a resource
    stored before a data migration that indexes it."""
    import orjson

    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO resources (res_type, res_id, version, updated_us, deleted, body) VALUES (:t, :i, 1, 1, FALSE, :b)"),
            {"t": resource["resourceType"], "i": resource["id"], "b": orjson.dumps(resource)},
        )


@pytest.fixture
def fresh_database_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """An empty database of the parametrized backend (no tables yet)."""
    with database(getattr(request, "param", "sqlite"), tmp_path) as url:
        yield url


@pytest.fixture(scope="session", params=BACKENDS)
def backend_url(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[str]:
    """One database per backend for the whole session (the app migrates it)."""
    with database(request.param, tmp_path_factory.mktemp("db")) as url:
        yield url


@pytest.fixture(scope="session")
def app_client(backend_url: str) -> Iterator[TestClient]:
    app = create_app(Settings(database_url=backend_url, base_url="http://testserver/fhir"))
    with TestClient(app) as client:
        yield client


@pytest.fixture(params=BACKENDS)
def secured(request: pytest.FixtureRequest, tmp_path) -> Iterator[TestClient]:
    """The app in token mode on a fresh database (SQLite and PostgreSQL); a module that needs more
    (bulk routes, a simulator) defines its own."""
    with database(request.param, tmp_path) as url:
        app = create_app(Settings(database_url=url, auth="token", base_url="http://testserver/fhir"))
        with TestClient(app) as c:
            yield c


def empty_tables(engine: sa.Engine) -> None:
    """Delete every row of the server's tables in ``engine``'s database (those it has)."""
    # DELETE, not TRUNCATE: on a handful of rows it is ten times faster on PostgreSQL
    existing = set(sa.inspect(engine).get_table_names())
    for attempt in range(5):
        try:
            with engine.begin() as conn:
                for table in reversed(metadata.sorted_tables):
                    if table.name in existing:
                        conn.execute(table.delete())
            return
        except sa.exc.OperationalError as exc:
            # a background worker of the app (a Subscription's status written by its delivery
            # worker) may still be writing the rows deleted here: PostgreSQL breaks the deadlock
            if type(exc.orig).__name__ != "DeadlockDetected" or attempt == 4:
                raise


@pytest.fixture
def client(app_client: TestClient) -> TestClient:
    """The app on an empty database (SQLite and PostgreSQL)."""
    empty_tables(app_client.app.state.fhir.db.engine)
    return app_client
