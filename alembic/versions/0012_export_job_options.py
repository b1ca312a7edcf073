"""Bulk Data kick-off options on export jobs: the patient parameter, includeAssociatedData and
the issues of ignored parameters (reported in the manifest's error array).

Revision ID: 0012_export_job_options
Revises: 0011_subscriptions

Mirrors the three columns of ``fhir_server/storage/bulk_tables.py``; all nullable, so jobs queued
before the upgrade keep their meaning (every patient, no associated data, nothing ignored).
"""

import sqlalchemy as sa

from alembic import op

revision = "0012_export_job_options"
down_revision = "0011_subscriptions"
branch_labels = None
depends_on = None

_COLUMNS = ("patient_ids", "associated_data", "kickoff_issues")


def upgrade() -> None:
    with op.batch_alter_table("export_jobs") as batch:
        for name in _COLUMNS:
            batch.add_column(sa.Column(name, sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("export_jobs") as batch:
        for name in reversed(_COLUMNS):
            batch.drop_column(name)
