"""The database at start-up: reachable, existing (created on request), writable.

``prepare_database`` runs before migrations and before any worker starts (``fhir-server
serve``, ``migrate``, ``import``). Every problem an operator fixes (a database that does not
exist, a refused connection, a wrong user, a URL that is not one, an SQLite folder that is
missing or cannot be written) becomes a :class:`StartupError` whose text is one line saying
what is wrong and what to do; the CLI prints it and exits 1 instead of a driver traceback.
``create``: a missing PostgreSQL database is created (``CREATE DATABASE`` through the
``postgres`` maintenance database), a missing SQLite folder too.
"""

from __future__ import annotations

import re
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, make_url

from fhir_server.config import StartupError
from fhir_server.storage.db import is_sqlite

CREATE_HINT = "start with --create-database (or FHIR_CREATE_DATABASE=true) to create it"
URL_FORMS = "use sqlite:///path/to/fhir.sqlite3 or postgresql+psycopg://user@host:5432/dbname"
_MISSING_DB = re.compile(r'database "([^"]+)" does not exist')
_MISSING_ROLE = re.compile(r'role "([^"]+)" does not exist')


def parse_url(url: str) -> URL:
    """The SQLAlchemy URL, or StartupError when it is not a URL of a database this server runs on."""
    try:
        parsed = make_url(url)
    except sa_exc.ArgumentError:
        raise StartupError(f"the database URL {url!r} is not a URL: {URL_FORMS}") from None
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise StartupError(
            f"the database URL {_safe(parsed)} names {parsed.get_backend_name()!r}, a database this server does not run on: {URL_FORMS}"
        )
    return parsed


def prepare_database(url: str, *, create: bool = False) -> None:
    """Check that the database of ``url`` can be used (StartupError otherwise); with ``create``,
    create a missing PostgreSQL database or SQLite folder first."""
    parsed = parse_url(url)
    if is_sqlite(url):
        _prepare_sqlite(parsed, create)
    else:
        _prepare_postgres(parsed, create)


# --------------------------------------------------------------------------- SQLite


def _prepare_sqlite(url: URL, create: bool) -> None:
    if not url.database or url.database == ":memory:":
        return
    path = Path(url.database).expanduser().absolute()
    folder = path.parent
    if not folder.exists():
        if not create:
            raise StartupError(f"the folder {folder} of the SQLite database does not exist: create it, or {CREATE_HINT}")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StartupError(f"cannot create the folder {folder} for the SQLite database: {_os_reason(exc)}") from None
    if not folder.is_dir():
        raise StartupError(f"the SQLite database {path} cannot be created: {folder} is not a folder; choose another path")
    # open it as the server does (WAL needs the -wal/-shm files beside it) and take the write lock once
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA journal_mode=WAL")
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            conn.exec_driver_sql("ROLLBACK")
    except sa_exc.OperationalError as exc:
        raise StartupError(f"cannot write the SQLite database {path}: {_first_line(exc)}; check the path and its permissions") from None
    finally:
        engine.dispose()


def _os_reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


# --------------------------------------------------------------------------- PostgreSQL


def _prepare_postgres(url: URL, create: bool) -> None:
    try:
        _connect(url)
        return
    except sa_exc.OperationalError as exc:
        problem = explain(exc, url)
        missing = _MISSING_DB.search(str(exc.orig))
        if missing is None or not create:
            raise StartupError(problem) from None
    _create_database(url)


def _connect(url: URL) -> None:
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect():
            pass
    finally:
        engine.dispose()


def _create_database(url: URL) -> None:
    """``CREATE DATABASE`` from the maintenance database of the same server (``postgres``, else
    ``template1``), with the URL's user and options; a database created meanwhile is fine."""
    name = url.database or ""
    last: sa_exc.OperationalError | None = None
    for maintenance in ("postgres", "template1"):
        engine = sa.create_engine(url.set(database=maintenance), poolclass=sa.NullPool, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                exists = conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first()
                if exists is None:
                    conn.exec_driver_sql(f'CREATE DATABASE "{name.replace(chr(34), chr(34) * 2)}"')
            return
        except sa_exc.OperationalError as exc:
            last = exc
        except sa_exc.ProgrammingError as exc:
            if "already exists" in str(exc.orig):
                return  # another process created it at the same time
            raise StartupError(f'cannot create the PostgreSQL database "{name}" on {_where(url)}: {_first_line(exc)}') from None
        finally:
            engine.dispose()
    assert last is not None
    raise StartupError(f'cannot create the PostgreSQL database "{name}" on {_where(url)}: {_first_line(last)}')


def explain(exc: sa_exc.OperationalError, url: URL) -> str:
    """One line for a failed PostgreSQL connection: what is wrong and what to do."""
    text = str(exc.orig) if exc.orig is not None else str(exc)
    where = _where(url)
    missing = _MISSING_DB.search(text)
    if missing:
        name = missing.group(1)
        create = f"createdb -h {url.host or 'localhost'} -p {url.port or 5432} {name}"
        return f'the PostgreSQL database "{name}" does not exist on {where}: create it ({create}), or {CREATE_HINT}'
    role = _MISSING_ROLE.search(text)
    if role:
        return f'PostgreSQL at {where} has no user "{role.group(1)}": put an existing user in the database URL (user@host)'
    if "password authentication failed" in text or "no password supplied" in text:
        return f'PostgreSQL at {where} refused user "{url.username}": check the user and password in the database URL'
    if "Connection refused" in text or "could not connect" in text or "No such file or directory" in text:
        return f"cannot reach PostgreSQL at {where} (connection refused): is it running and accepting TCP connections on that port?"
    if "failed to resolve host" in text or "could not translate host name" in text:
        return f"cannot reach PostgreSQL at {where}: the host name does not resolve; check the host in the database URL"
    if "timeout" in text.lower():
        return f"cannot reach PostgreSQL at {where} (timed out): check the host, the port and the firewall"
    return f"cannot connect to PostgreSQL at {where}: {_first_line(exc)}"


def _where(url: URL) -> str:
    return f"{url.host or 'localhost'}:{url.port or 5432}"


def _safe(url: URL) -> str:
    return url.render_as_string(hide_password=True)


def _first_line(exc: sa_exc.DBAPIError) -> str:
    """The driver's message without SQLAlchemy's additions, on one line."""
    text = str(exc.orig) if exc.orig is not None else str(exc)
    text = text.split("\n(Background on this error", 1)[0]
    text = re.sub(r"^connection failed: connection to server at [^,]+, port \d+ failed: ", "", text)
    return " ".join(text.split())
