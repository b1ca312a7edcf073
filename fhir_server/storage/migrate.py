"""Run the Alembic migrations from Python (start-up and ``fhir-server migrate``).

Nodes started at the same moment on one database would otherwise run the same
migrations at once and all but one die (PostgreSQL: ``UniqueViolation`` on
``alembic_version``; SQLite: "database is locked"). Upgrades and downgrades
therefore run under :func:`migration_lock`: the other nodes wait, then find the
schema at head and do nothing.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from alembic.config import Config
from sqlalchemy.engine import Engine

from alembic import command

try:  # POSIX; elsewhere SQLite's busy timeout alone makes a second node wait
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

#: the PostgreSQL advisory lock key of the migrations: fixed, so every node of every version
#: takes the same lock ("FHIRMIGR" in ASCII). Advisory locks are per database, not per schema.
PG_LOCK_KEY = int.from_bytes(b"FHIRMIGR", "big")


def stored_bodies(
    conn: sa.Connection, res_types: tuple[str, ...] | None = None, batch: int = 2000
) -> Iterator[list[tuple[int, str, bytes]]]:
    """The current resources' ``(pk, type, body)``, of ``res_types`` (None: every type), in key
    order, ``batch`` at a time: for the data migrations that index what was stored before them."""
    kinds = " AND res_type IN :types" if res_types else ""
    stmt = sa.text(f"SELECT pk, res_type, body FROM resources WHERE deleted = :f AND pk > :last{kinds} ORDER BY pk LIMIT :n")
    if res_types:
        stmt = stmt.bindparams(sa.bindparam("types", expanding=True))
    last = -1
    while True:
        params: dict[str, object] = {"f": False, "last": last, "n": batch}
        if res_types:
            params["types"] = list(res_types)
        rows = conn.execute(stmt, params).all()
        if not rows:
            return
        last = rows[-1][0]
        yield [(pk, res_type, bytes(body)) for pk, res_type, body in rows if body is not None]


def index_stored(
    conn: sa.Connection, res_types: tuple[str, ...], table: str, rows_of: Callable[[int, dict[str, Any]], Iterable[dict[str, Any]]]
) -> None:
    """Insert into the index table ``table`` the rows ``rows_of(pk, resource)`` (its columns by name)
    of every current resource of ``res_types``: the data migrations that index what was stored
    before them."""
    for rows in stored_bodies(conn, res_types):
        found = [row for pk, _, body in rows for row in rows_of(pk, orjson.loads(body))]
        if found:
            columns = list(found[0])
            conn.execute(sa.text(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(':' + c for c in columns)})"), found)


def script_location() -> Path:
    """The ``alembic/`` folder: beside the package in a checkout or editable
    install, or under ``<prefix>/share/fhir-server`` after ``pip install .``."""
    here = Path(__file__).resolve().parents[2] / "alembic"
    if (here / "env.py").exists():
        return here
    installed = Path(sys.prefix) / "share" / "fhir-server" / "alembic"
    if (installed / "env.py").exists():
        return installed
    raise FileNotFoundError("the alembic/ migrations folder was not found")


def _run(engine: Engine, action: str, revision: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location()))
    with migration_lock(engine), engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            # take the write lock at BEGIN (db.py's "begin" hook), not at the first DDL, where a
            # transaction that read an older snapshot fails at once instead of waiting
            conn.info["sqlite_begin"] = "IMMEDIATE"
        cfg.attributes["connection"] = conn
        getattr(command, action)(cfg, revision)
        conn.commit()


def upgrade(engine: Engine, revision: str = "head") -> None:
    _run(engine, "upgrade", revision)


def downgrade(engine: Engine, revision: str = "base") -> None:
    _run(engine, "downgrade", revision)


@contextmanager
def migration_lock(engine: Engine) -> Iterator[None]:
    """Held by one process at a time per database (nodes on other machines included).

    Not re-entrant across connections: do not migrate while this process holds it, or
    (SQLite) while it holds a write transaction.
    """
    if engine.dialect.name == "postgresql":
        with _pg_advisory_lock(engine):
            yield
    elif engine.dialect.name == "sqlite":
        with _sqlite_file_lock(engine):
            yield
    else:  # pragma: no cover - only SQLite and PostgreSQL are supported
        yield


@contextmanager
def _pg_advisory_lock(engine: Engine) -> Iterator[None]:
    # a session-level lock on a connection of its own: it outlives the migrations' transactions,
    # and the connection sits idle (not "idle in transaction") while they run
    with engine.connect() as conn:
        with conn.begin():
            # wait as long as the other node's migrations take: the server's statement_timeout
            # (30 s by default) would otherwise cancel the wait and fail this node's start
            conn.execute(sa.text("SET LOCAL statement_timeout = 0"))
            conn.execute(sa.text("SET LOCAL lock_timeout = 0"))
            conn.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": PG_LOCK_KEY})
        try:
            yield
        finally:
            conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": PG_LOCK_KEY})
            conn.commit()


@contextmanager
def _sqlite_file_lock(engine: Engine) -> Iterator[None]:
    # the flock on <database>.lock that Database writers take (storage/db.py): a second node
    # waits for the first one's migrations however long they take (SQLite's busy timeout would
    # give up after 30 s), and running nodes' writers wait for the migrations too
    database = engine.url.database
    if fcntl is None or not database or database == ":memory:" or database.startswith("file:"):
        yield
        return
    fd = os.open(database + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the flock


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
