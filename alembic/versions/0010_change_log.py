"""The change log: one row per committed create, update and delete, in commit order.

Revision ID: 0010_change_log
Revises: 0009_audit_client_index_partial
"""

import sqlalchemy as sa

from alembic import op

revision = "0010_change_log"
down_revision = "0009_audit_client_index_partial"
branch_labels = None
depends_on = None

_BIG_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "change_log",
        sa.Column("seq", _BIG_PK, autoincrement=True),
        sa.Column("res_type", sa.String(64), nullable=False),
        sa.Column("res_id", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("action", sa.String(8), nullable=False),
        sa.Column("client_id", sa.String(64), nullable=True),
        sa.Column("recorded_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_change_log"),
        # AUTOINCREMENT: a purge that empties the table must not let SQLite reuse old numbers
        sqlite_autoincrement=True,
    )
    op.create_index("ix_change_log_recorded_us", "change_log", ["recorded_us"])


def downgrade() -> None:
    op.drop_index("ix_change_log_recorded_us", table_name="change_log")
    op.drop_table("change_log")
