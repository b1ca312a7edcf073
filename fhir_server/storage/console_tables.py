"""Tables of the web console: its users and their sign-in sessions (migration ``0015_console_users``).

Registered on the shared ``metadata`` so the test fixtures see them. Times are epoch microseconds.
"""

from __future__ import annotations

import sqlalchemy as sa

from .tables import metadata

# One row per console user. ``password_hash`` is a salted scrypt hash (auth/clients.hash_secret);
# ``role`` is viewer, clerk or admin (auth/users.ROLES: the SMART scopes it maps to);
# disabling keeps the row so audit records keep pointing somewhere. ``failures`` counts
# wrong passwords in a row; at the limit the user is locked until ``locked_until_us``.
console_users = sa.Table(
    "console_users",
    metadata,
    sa.Column("username", sa.String(64), primary_key=True),
    sa.Column("display_name", sa.String(200), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
    sa.Column("locked_until_us", sa.BigInteger, nullable=True),
    sa.Column("created_us", sa.BigInteger, nullable=False),
)

# A signed-in browser: the cookie carries a random token, the row its SHA-256 (a stolen
# database copy holds no usable session). Deleted on sign-out; ignored once expired.
console_sessions = sa.Table(
    "console_sessions",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("username", sa.String(64), sa.ForeignKey("console_users.username", ondelete="CASCADE"), nullable=False),
    sa.Column("created_us", sa.BigInteger, nullable=False),
    sa.Column("expires_us", sa.BigInteger, nullable=False),
    sa.Index(None, "expires_us"),
)
