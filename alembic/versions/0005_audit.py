"""The audit trail table.

Revision ID: 0005_audit
Revises: 0004_auth

Mirrors ``fhir_server/storage/audit_tables.py`` (same names, columns and constraints).
"""

import sqlalchemy as sa

from alembic import op

revision = "0005_audit"
down_revision = "0004_auth"
branch_labels = None
depends_on = None

BigPk = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("pk", BigPk, nullable=False, autoincrement=True),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("recorded_us", sa.BigInteger, nullable=False),
        sa.Column("interaction", sa.String(32), nullable=False),
        sa.Column("action", sa.String(1), nullable=False),
        sa.Column("res_type", sa.String(64), nullable=True),
        sa.Column("res_id", sa.String(64), nullable=True),
        sa.Column("query", sa.Text, nullable=True),
        sa.Column("operation", sa.String(64), nullable=True),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("client_id", sa.String(128), nullable=True),
        sa.Column("organization_id", sa.String(64), nullable=True),
        sa.Column("address", sa.String(64), nullable=True),
        sa.Column("user_agent", sa.String(256), nullable=True),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("pk", name="pk_audit_events"),
        sa.UniqueConstraint("event_id", name="uq_audit_events_event_id"),
    )
    op.create_index("ix_audit_events_recorded_us_pk", "audit_events", ["recorded_us", "pk"])
    op.create_index("ix_audit_events_client_id_recorded_us_pk", "audit_events", ["client_id", "recorded_us", "pk"])


def downgrade() -> None:
    op.drop_index("ix_audit_events_client_id_recorded_us_pk", table_name="audit_events")
    op.drop_index("ix_audit_events_recorded_us_pk", table_name="audit_events")
    op.drop_table("audit_events")
