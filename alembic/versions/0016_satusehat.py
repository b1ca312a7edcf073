"""SATUSEHAT sync: per-resource sync state, the NIK -> IHS cache and the facilities table.

Revision ID: 0016_satusehat
Revises: 0015_console_users
"""

import sqlalchemy as sa

from alembic import op

revision = "0016_satusehat"
down_revision = "0015_console_users"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "satusehat_items",
        sa.Column("res_type", sa.String(64), primary_key=True),
        sa.Column("res_id", sa.String(64), primary_key=True),
        sa.Column("facility", sa.String(64), nullable=False),
        sa.Column("partition", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("satusehat_id", sa.String(64), nullable=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("synced_version", sa.Integer, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_attempt_us", sa.BigInteger, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("rule", sa.String(64), nullable=True),
        sa.Column("outcome", sa.Text, nullable=True),
        sa.Column("waits_for", sa.String(140), nullable=True),
        sa.Column("in_doubt", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("queued_us", sa.BigInteger, nullable=False),
        sa.Column("updated_us", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_satusehat_items_partition", "satusehat_items", ["partition", "status"])
    op.create_index("ix_satusehat_items_status", "satusehat_items", ["status", "facility"])
    op.create_index("ix_satusehat_items_waits_for", "satusehat_items", ["waits_for"])
    op.create_table(
        "satusehat_ids",
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("nik", sa.String(32), primary_key=True),
        sa.Column("ihs", sa.String(64), nullable=True),
        sa.Column("checked_us", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "satusehat_facilities",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("local_org", sa.String(64), nullable=False, unique=True),
        sa.Column("organization_id", sa.String(64), nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("client_id", sa.String(256), nullable=False),
        sa.Column("client_secret", sa.Text, nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("satusehat_facilities")
    op.drop_table("satusehat_ids")
    op.drop_table("satusehat_items")
