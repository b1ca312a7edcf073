"""Bulk Data kick-off filters on export jobs: ``_typeFilter`` and ``_elements``.

Revision ID: 0019_export_filters
Revises: 0018_other_references

Mirrors two columns of ``fhir_server/storage/bulk_tables.py``; both nullable, so jobs queued
before the upgrade keep their meaning (no filter, whole resources).
"""

import sqlalchemy as sa

from alembic import op

revision = "0019_export_filters"
down_revision = "0018_other_references"
branch_labels = None
depends_on = None

_COLUMNS = ("type_filters", "elements")


def upgrade() -> None:
    with op.batch_alter_table("export_jobs") as batch:
        for name in _COLUMNS:
            batch.add_column(sa.Column(name, sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("export_jobs") as batch:
        for name in reversed(_COLUMNS):
            batch.drop_column(name)
