"""Web console: its users and their sign-in sessions (fhir_server/storage/console_tables.py).

Revision ID: 0015_console_users
Revises: 0014_date_span_index
"""

import sqlalchemy as sa

from alembic import op

revision = "0015_console_users"
down_revision = "0014_date_span_index"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "console_users",
        sa.Column("username", sa.String(64), primary_key=True),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
        sa.Column("locked_until_us", sa.BigInteger, nullable=True),
        sa.Column("created_us", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "console_sessions",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("username", sa.String(64), sa.ForeignKey("console_users.username", ondelete="CASCADE"), nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("expires_us", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_console_sessions_expires_us", "console_sessions", ["expires_us"])


def downgrade() -> None:
    op.drop_table("console_sessions")
    op.drop_table("console_users")
