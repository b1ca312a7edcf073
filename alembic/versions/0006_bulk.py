"""The Bulk Data $export job table.

Revision ID: 0006_bulk
Revises: 0005_audit

Mirrors ``fhir_server/storage/bulk_tables.py`` (same names, columns and constraints).
"""

import sqlalchemy as sa

from alembic import op

revision = "0006_bulk"
down_revision = "0005_audit"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "export_jobs",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("group_id", sa.String(64), nullable=True),
        sa.Column("types", sa.Text, nullable=True),
        sa.Column("since_us", sa.BigInteger, nullable=True),
        sa.Column("output_format", sa.String(64), nullable=False),
        sa.Column("request_url", sa.Text, nullable=False),
        sa.Column("client_id", sa.String(128), nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("updated_us", sa.BigInteger, nullable=False),
        sa.Column("transaction_time_us", sa.BigInteger, nullable=True),
        sa.Column("progress", sa.String(256), nullable=True),
        sa.Column("lease_owner", sa.String(128), nullable=True),
        sa.Column("lease_until_us", sa.BigInteger, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("manifest", sa.Text, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_export_jobs"),
        sa.CheckConstraint("status IN ('queued', 'running', 'complete', 'error', 'cancelled')", name=op.f("ck_export_jobs_status")),
        sa.CheckConstraint("level IN ('system', 'patient', 'group')", name=op.f("ck_export_jobs_level")),
    )
    op.create_index("ix_export_jobs_status_lease_until_us", "export_jobs", ["status", "lease_until_us"])
    op.create_index("ix_export_jobs_client_id_created_us", "export_jobs", ["client_id", "created_us"])


def downgrade() -> None:
    op.drop_index("ix_export_jobs_client_id_created_us", table_name="export_jobs")
    op.drop_index("ix_export_jobs_status_lease_until_us", table_name="export_jobs")
    op.drop_table("export_jobs")
