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
from functools import lru_cache

_NAMED = re.compile(r":(v\d+)\b")


@lru_cache(maxsize=1024)
def positional(sql: str, dialect: str) -> str:
    """``?`` placeholders as ``dialect``'s driver wants them (cached: the texts are few)."""
    return sql.replace("?", "%s") if dialect == "postgresql" else sql


def named(sql: str, dialect: str) -> str:
    """``:vN`` placeholders as ``dialect``'s driver wants them (built searches: not cached)."""
    return sql if dialect == "sqlite" else _NAMED.sub(r"%(\1)s", sql)
