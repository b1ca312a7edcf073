"""The one placeholder convention of the SQL this project writes by hand.

Statements passed straight to the DBAPI driver (hot paths that skip SQLAlchemy's statement
machinery) are written with ``?`` for positional parameters, or ``:vN`` for the named
parameters of built searches (search/sql.py), and pass through :func:`positional` or
:func:`named` on their way to the driver: sqlite3 takes both as written, psycopg wants
``%s`` / ``%(vN)s``. Nothing else converts placeholders. Literal ``?`` and ``%`` never
appear in this SQL outside parameters (values are always bound).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from sqlalchemy.engine import Connection

_NAMED = re.compile(r":(v\d+)\b")


@lru_cache(maxsize=1024)
def positional(sql: str, dialect: str) -> str:
    """``?`` placeholders as ``dialect``'s driver wants them (cached: the texts are few)."""
    return sql.replace("?", "%s") if dialect == "postgresql" else sql


def named(sql: str, dialect: str) -> str:
    """``:vN`` placeholders as ``dialect``'s driver wants them (built searches: not cached)."""
    return sql if dialect == "sqlite" else _NAMED.sub(r"%(\1)s", sql)


@contextmanager
def driver_cursor(conn: Connection) -> Iterator[Any]:
    """A cursor of the driver on the caller's transaction, closed after (the one way this
    project's hot paths reach the DBAPI: SQLAlchemy's statement machinery skipped)."""
    cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        yield cur
    finally:
        cur.close()


def driver_executemany(conn: Connection, sql: str, rows: Sequence[Sequence[Any]]) -> None:
    """``sql`` (``?`` placeholders) once per row, straight to the driver: for small statements a
    background worker runs per row inside SQLite's write lock, where SQLAlchemy's per-row parameter
    processing cost more than the statement."""
    if not rows:
        return
    with driver_cursor(conn) as cur:
        cur.executemany(positional(sql, conn.dialect.name), rows)


def driver_execute(conn: Connection, sql: str, params: Sequence[Any]) -> int:
    """``sql`` (``?`` placeholders) on the caller's transaction, straight to the driver; the rows it changed."""
    with driver_cursor(conn) as cur:
        cur.execute(positional(sql, conn.dialect.name), params)
        return int(cur.rowcount)


def driver_fetchall(conn: Connection, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    """The rows of ``sql`` (``?`` placeholders) on the caller's transaction, straight to the driver."""
    with driver_cursor(conn) as cur:
        cur.execute(positional(sql, conn.dialect.name), params)
        return list(cur.fetchall())


def driver_fetchone(conn: Connection, sql: str, params: Sequence[Any]) -> Any:
    """The first row of ``sql`` (``?`` placeholders; the driver's tuple) or None, on the caller's
    transaction, straight to the driver."""
    with driver_cursor(conn) as cur:
        cur.execute(positional(sql, conn.dialect.name), params)
        return cur.fetchone()
