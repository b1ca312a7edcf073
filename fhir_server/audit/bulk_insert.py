"""Writing audit rows: the cheapest bulk statement of each database.

A row is laid out as one of ``events.LAYOUTS``: ``ANONYMOUS_COLUMNS`` (8
values: a plain read without a client), ``BASE_COLUMNS`` (10: with a client)
or ``FULL_COLUMNS`` (14: with a query, an operation, a request id or an
explicit event id); each layout is inserted with its own column list, since
every bound column costs insert time even when NULL.

- SQLite: multi-row ``INSERT ... VALUES (...), (...)`` statements of up to
  999 parameters (the oldest SQLite limit), the rest with executemany. One
  statement per ~100 rows instead of one step per row: ~40 % less CPU, and the
  GIL is released once per statement instead of once per row (the flusher
  shares the GIL with the request thread). Rows without a query (the two
  short layouts: reads, most writes) are grouped by the values they share -
  everything but ``recorded_us`` and ``res_id``, the same for every read of one
  client - and each group's shared values are bound once and referred to by
  number (``?1``..``?N``) in each of its rows: binding a value costs ~0.7 k
  instructions (conversion, a copy, the connection mutex), ~20 % of a row.
- PostgreSQL with psycopg 3: ``COPY ... FROM STDIN``.
"""

from __future__ import annotations

from itertools import chain
from typing import Any

from sqlalchemy.engine import Connection

from fhir_server.storage.placeholders import positional

from .events import LAYOUTS

_SQLITE_MAX_PARAMS = 999


def _values(n: int, mark: str) -> str:
    return "(" + ", ".join([mark] * n) + ")"


def insert_sql(width: int, dialect: str, rows: int = 1) -> str:
    """``INSERT`` of ``rows`` rows of ``width`` values (a layout of :data:`LAYOUTS`) for ``dialect``."""
    columns = LAYOUTS[width]
    values = ", ".join([_values(width, "?")] * rows)
    return positional(f"INSERT INTO audit_events ({', '.join(columns)}) VALUES {values}", dialect)


_ONE = {(w, dialect): insert_sql(w, dialect) for w in LAYOUTS for dialect in ("sqlite", "postgresql")}
_CHUNK = {w: _SQLITE_MAX_PARAMS // w for w in LAYOUTS}
_SQLITE_MULTI = {w: insert_sql(w, "sqlite", _CHUNK[w]) for w in LAYOUTS}
_COPY = {w: f"COPY audit_events ({', '.join(cols)}) FROM STDIN" for w, cols in LAYOUTS.items()}
#: where recorded_us and res_id are in every layout: the values of a row of its own
_OWN = (0, 5)
#: the layouts whose rows are grouped by their shared values (the full one holds a query: rarely shared)
_GROUPED = frozenset(LAYOUTS) - {max(LAYOUTS)}
#: statements of 2**k rows of a group: a fixed set of SQL texts (SQLite's statement cache keeps them
#: prepared). At most 128 rows: binding looks each numbered parameter up in a list as long as the
#: statement's (sqlite3VListNumToName), which made 256-row statements cost ~500 instructions a row
_GROUP_SIZES = [2**k for k in range(7, -1, -1)]


def _grouped_sql(width: int, rows: int) -> str:
    """INSERT of ``rows`` rows sharing ``?1``..``?{width - 2}``; each row's own values follow, two by two."""
    shared = {i: f"?{n}" for n, i in enumerate((i for i in range(width) if i not in _OWN), 1)}
    marks = []
    for row in range(rows):
        own = {i: f"?{width - 1 + 2 * row + k}" for k, i in enumerate(_OWN)}
        marks.append("(" + ", ".join(own.get(i) or shared[i] for i in range(width)) + ")")
    return f"INSERT INTO audit_events ({', '.join(LAYOUTS[width])}) VALUES {', '.join(marks)}"


_SQLITE_GROUPED = {(w, size): _grouped_sql(w, size) for w in _GROUPED for size in _GROUP_SIZES}


def insert_one(conn: Connection, row: tuple[Any, ...]) -> None:
    """INSERT one row in the caller's transaction (KeyError for a row of no known layout)."""
    conn.exec_driver_sql(_ONE[len(row), conn.dialect.name], row)


def insert_rows(conn: Connection, rows: list[tuple[Any, ...]]) -> None:
    """INSERT ``rows`` in the caller's transaction with the fewest statements."""
    if len(rows) == 1:
        insert_one(conn, rows[0])
        return
    by_width: dict[int, list[tuple[Any, ...]]] = {}
    for row in rows:
        try:
            by_width[len(row)].append(row)
        except KeyError:
            if len(row) not in LAYOUTS:
                raise ValueError(f"an audit row of {len(row)} values") from None
            by_width[len(row)] = [row]
    if conn.dialect.name == "sqlite":
        for width, group in by_width.items():
            _sqlite_insert(conn, width, group)
    elif conn.dialect.name == "postgresql" and _copy(conn, by_width):
        return
    else:
        for width, group in by_width.items():
            conn.exec_driver_sql(_ONE[width, conn.dialect.name], group)


def _sqlite_insert(conn: Connection, width: int, rows: list[tuple[Any, ...]]) -> None:
    driver = conn.connection.driver_connection
    assert driver is not None  # None only once the connection is invalidated, never while in use
    cursor = driver.cursor()
    try:
        if width in _GROUPED:
            _sqlite_grouped(cursor, width, rows)
            return
        chunk = _CHUNK[width]
        whole = len(rows) - len(rows) % chunk
        sql = _SQLITE_MULTI[width]
        for start in range(0, whole, chunk):
            cursor.execute(sql, list(chain.from_iterable(rows[start : start + chunk])))
        if whole < len(rows):
            cursor.executemany(_ONE[width, "sqlite"], rows[whole:])
    finally:
        cursor.close()


def _sqlite_grouped(cursor: Any, width: int, rows: list[tuple[Any, ...]]) -> None:
    groups: dict[tuple[Any, ...], list[Any]] = {}
    for row in rows:  # _OWN: values 0 and 5
        key = row[1:5] + row[6:]
        own = groups.get(key)
        if own is None:
            groups[key] = own = []
        own.append(row[0])
        own.append(row[5])
    for key, own in groups.items():
        start, left = 0, len(own) // 2
        for size in _GROUP_SIZES:
            while left >= size:
                cursor.execute(_SQLITE_GROUPED[width, size], key + tuple(own[start : start + 2 * size]))
                start += 2 * size
                left -= size


def _copy(conn: Connection, by_width: dict[int, list[tuple[Any, ...]]]) -> bool:
    """COPY each layout (psycopg 3, ~1 µs of client CPU per row); False without psycopg 3."""
    driver = conn.connection.driver_connection
    assert driver is not None  # None only once the connection is invalidated, never while in use
    cursor = driver.cursor()
    try:
        if not hasattr(cursor, "copy"):
            return False
        for width, group in by_width.items():
            with cursor.copy(_COPY[width]) as copy:
                for row in group:
                    copy.write_row(row)
        return True
    finally:
        cursor.close()
