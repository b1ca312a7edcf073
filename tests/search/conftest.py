"""Engines for the search tests: SQLite (temp file) and PostgreSQL (own schema per session).

PostgreSQL runs when ``FHIR_TEST_POSTGRES_URL`` is set, e.g.
``postgresql+psycopg://postgres@127.0.0.1:5432/test``.
"""

from __future__ import annotations

import itertools
import os
import secrets
import time

import orjson
import pytest
import sqlalchemy as sa

from fhir_server.search.extract import extract_index
from fhir_server.storage import index_tables  # noqa: F401 - registers the index tables on metadata
from fhir_server.storage.search_index import replace_index
from fhir_server.storage.tables import metadata, resources

PG_URL = os.environ.get("FHIR_TEST_POSTGRES_URL")
BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])


def _sqlite_engine(path) -> sa.Engine:
    eng = sa.create_engine(f"sqlite:///{path}")

    @sa.event.listens_for(eng, "connect")
    def _pragmas(dbapi_conn, _):
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    return eng


@pytest.fixture(scope="session", params=BACKENDS)
def engine(request, tmp_path_factory):
    if request.param == "sqlite":
        eng = _sqlite_engine(tmp_path_factory.mktemp("db") / "search.db")
        metadata.create_all(eng)
        yield eng
        eng.dispose()
        return
    schema = "s_" + secrets.token_hex(6)
    admin = sa.create_engine(PG_URL)
    with admin.begin() as c:
        c.execute(sa.text(f"CREATE SCHEMA {schema}"))
    eng = sa.create_engine(PG_URL, connect_args={"options": f"-csearch_path={schema}"})
    metadata.create_all(eng)
    yield eng
    eng.dispose()
    with admin.begin() as c:
        c.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


_clock = itertools.count(int(time.time() * 1_000_000))


class Store:
    """Tiny test helper: insert resources with their index rows (as the repository will)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def put(self, resource: dict, *, updated_us: int | None = None) -> dict:
        resource = dict(resource)
        with self.engine.begin() as conn:
            return self.put_conn(conn, resource, updated_us=updated_us)

    def put_conn(self, conn, resource: dict, *, updated_us: int | None = None) -> dict:
        body = orjson.dumps(resource)
        row = conn.execute(
            resources.select().where(resources.c.res_type == resource["resourceType"], resources.c.res_id == resource["id"])
        ).first()
        us = updated_us if updated_us is not None else next(_clock)
        if row is None:
            pk = conn.execute(
                resources.insert()
                .values(res_type=resource["resourceType"], res_id=resource["id"], version=1, updated_us=us, deleted=False, body=body)
                .returning(resources.c.pk)
            ).scalar_one()
        else:
            pk = row.pk
            conn.execute(
                resources.update().where(resources.c.pk == pk).values(version=row.version + 1, updated_us=us, body=body, deleted=False)
            )
        replace_index(conn, pk, extract_index(resource))
        return resource

    def delete(self, res_type: str, res_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                resources.update().where(resources.c.res_type == res_type, resources.c.res_id == res_id).values(deleted=True, body=None)
            )


def _clear(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            names = ", ".join(t.name for t in metadata.sorted_tables)
            conn.execute(sa.text(f"TRUNCATE {names}"))
        else:
            for t in reversed(metadata.sorted_tables):
                conn.execute(t.delete())


@pytest.fixture
def store(engine) -> Store:
    """An empty database for each test."""
    _clear(engine)
    return Store(engine)
