"""Console users: people who sign in to the web console (``fhir-server users add|list|disable``).

A user's role maps onto the same SMART ``system/`` scopes as an OAuth client's, so the console
asks the same :class:`~fhir_server.service.access.Principal` questions the API asks a token:

- ``viewer``: read and search every type (``system/*.rs``)
- ``clerk``: also create and update (imports, edits): ``system/*.crus``, and the SATUSEHAT sync
  state (``system/satusehat.read``)
- ``admin``: everything, the audit trail and SATUSEHAT retries included (``system/satusehat.write``),
  plus the console's admin pages

Passwords are hashed with scrypt (``clients.hash_secret``). After :data:`MAX_FAILURES` wrong
passwords in a row the user is locked for :data:`LOCK_SECONDS`; sessions live in
``console_sessions`` (only the SHA-256 of the cookie's token is stored).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from fhir_server.storage.console_tables import console_sessions, console_users

from .clients import hash_secret, verify_secret
from .scopes import ScopeSet

ROLES: dict[str, str] = {
    "viewer": "system/*.rs",
    "clerk": "system/*.crus system/satusehat.read",
    "admin": "system/*.cruds system/AuditEvent.rs system/satusehat.read system/satusehat.write",
}
MAX_FAILURES = 5
LOCK_SECONDS = 15 * 60
SESSION_SECONDS = 8 * 3600
MIN_PASSWORD = 10
_USERNAME = re.compile(r"[a-z0-9][a-z0-9._-]{1,63}")
#: what the console's principals are called in the audit trail and the change log
CLIENT_PREFIX = "console:"


class UserError(ValueError):
    """A user that cannot be added or changed as asked (the message is for the operator)."""


@dataclass(frozen=True, slots=True)
class User:
    username: str
    display_name: str
    role: str
    active: bool
    created_us: int
    locked_until_us: int | None = None

    @property
    def scopes(self) -> ScopeSet:
        return ScopeSet.parse(ROLES[self.role])

    @property
    def client_id(self) -> str:
        """The agent of this user's actions in AuditEvents and the change log."""
        return CLIENT_PREFIX + self.username

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def _now_us() -> int:
    return time.time_ns() // 1000


def add_user(conn: Connection, username: str, password: str, role: str, display_name: str | None = None) -> User:
    if not _USERNAME.fullmatch(username):
        raise UserError("username: 2-64 characters of a-z, 0-9, '.', '_' or '-', starting with a letter or digit")
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}")
    if len(password) < MIN_PASSWORD:
        raise UserError(f"the password needs at least {MIN_PASSWORD} characters")
    user = User(username, display_name or username, role, True, _now_us())
    try:
        with conn.begin_nested():
            conn.execute(
                console_users.insert().values(
                    username=username,
                    display_name=user.display_name,
                    role=role,
                    password_hash=hash_secret(password),
                    active=True,
                    failures=0,
                    created_us=user.created_us,
                )
            )
    except IntegrityError:
        raise UserError(f"user '{username}' already exists") from None
    return user


def list_users(conn: Connection) -> list[User]:
    rows = conn.execute(sa.select(console_users).order_by(console_users.c.username)).mappings()
    return [_user(row) for row in rows]


def get_user(conn: Connection, username: str) -> User | None:
    row = conn.execute(sa.select(console_users).where(console_users.c.username == username)).mappings().first()
    return _user(row) if row is not None else None


def disable_user(conn: Connection, username: str) -> bool:
    """Disable a user and end their sessions; False if there is no such user."""
    done = conn.execute(console_users.update().where(console_users.c.username == username).values(active=False)).rowcount > 0
    conn.execute(console_sessions.delete().where(console_sessions.c.username == username))
    return done


def set_role(conn: Connection, username: str, role: str) -> bool:
    """Give ``username`` another role (effective on their next request); False: no such user."""
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}")
    return conn.execute(console_users.update().where(console_users.c.username == username).values(role=role)).rowcount > 0


def reset_password(conn: Connection, username: str, password: str) -> bool:
    """A new password for ``username``: the lock-out is lifted and their sessions end (whoever
    knew the old password is signed out). False: no such user."""
    if len(password) < MIN_PASSWORD:
        raise UserError(f"the password needs at least {MIN_PASSWORD} characters")
    done = (
        conn.execute(
            console_users.update()
            .where(console_users.c.username == username)
            .values(password_hash=hash_secret(password), failures=0, locked_until_us=None)
        ).rowcount
        > 0
    )
    conn.execute(console_sessions.delete().where(console_sessions.c.username == username))
    return done


def authenticate(conn: Connection, username: str, password: str, now_us: int | None = None) -> tuple[User | None, str]:
    """(the user, "") when the password is right; (None, reason) otherwise, reason one of
    ``invalid`` (unknown user, wrong password, disabled: not told apart) and ``locked``.

    The hash is computed even for an unknown user, so timing does not reveal who exists."""
    now = _now_us() if now_us is None else now_us
    row = conn.execute(sa.select(console_users).where(console_users.c.username == username)).mappings().first()
    if row is None:
        verify_secret(password, None)
        return None, "invalid"
    if row["locked_until_us"] is not None and row["locked_until_us"] > now:
        verify_secret(password, None)
        return None, "locked"
    if not verify_secret(password, row["password_hash"]) or not row["active"]:
        failures = row["failures"] + 1
        locked = now + LOCK_SECONDS * 1_000_000 if failures >= MAX_FAILURES else None
        conn.execute(
            console_users.update()
            .where(console_users.c.username == username)
            .values(failures=0 if locked else failures, locked_until_us=locked)
        )
        return None, "locked" if locked else "invalid"
    conn.execute(console_users.update().where(console_users.c.username == username).values(failures=0, locked_until_us=None))
    return _user(row), ""


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def start_session(conn: Connection, username: str, now_us: int | None = None) -> str:
    """A new session of ``username``: the token for the cookie (only its hash is stored)."""
    now = _now_us() if now_us is None else now_us
    token = secrets.token_urlsafe(32)
    conn.execute(console_sessions.delete().where(console_sessions.c.expires_us < now))
    conn.execute(
        console_sessions.insert().values(
            token_hash=_hash(token), username=username, created_us=now, expires_us=now + SESSION_SECONDS * 1_000_000
        )
    )
    return token


def session_user(conn: Connection, token: str, now_us: int | None = None) -> User | None:
    """The active user of a live session, or None."""
    now = _now_us() if now_us is None else now_us
    row = (
        conn.execute(
            sa.select(console_users)
            .join(console_sessions, console_sessions.c.username == console_users.c.username)
            .where(console_sessions.c.token_hash == _hash(token), console_sessions.c.expires_us > now, console_users.c.active.is_(True))
        )
        .mappings()
        .first()
    )
    return _user(row) if row is not None else None


def end_session(conn: Connection, token: str) -> None:
    conn.execute(console_sessions.delete().where(console_sessions.c.token_hash == _hash(token)))


def _user(row: sa.RowMapping) -> User:
    return User(row["username"], row["display_name"], row["role"], bool(row["active"]), row["created_us"], row["locked_until_us"])
