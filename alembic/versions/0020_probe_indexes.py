"""The (resource_pk, param) indexes of idx_token, idx_string and idx_date carry the values too.

A search with many matches (PostgreSQL, search/engine.py ``_page_by_count``) is a walk of
``resources`` in key order that checks each row's index entries for the criteria. With the values
in the per-resource index the check happens inside the index: at 1,000,000 Patients
``family=Santoso`` became a merge semi join of ``pk_resources`` with this index read in order (724
buffers); with only ``(resource_pk, param)`` each entry was read from the table, and on a freshly
loaded table the planner was seen checking rows through the ``(param, value, resource_pk)`` index
instead, scanning every ``santoso*`` entry (~50,000) once per row walked. The indexes keep their
names and still serve row replacement, cascades and per-resource sort keys.

Revision ID: 0020_probe_indexes
Revises: 0019_export_filters
"""

from alembic import op

revision = "0020_probe_indexes"
down_revision = "0019_export_filters"
branch_labels = None
depends_on = None

WIDENED = {
    "idx_token": ["code", "system"],
    "idx_string": ["value"],
    "idx_date": ["lo", "hi"],
}


def upgrade() -> None:
    for table, values in WIDENED.items():
        op.drop_index(f"ix_{table}_resource_pk", table_name=table)
        op.create_index(f"ix_{table}_resource_pk", table, ["resource_pk", "param", *values])


def downgrade() -> None:
    for table in WIDENED:
        op.drop_index(f"ix_{table}_resource_pk", table_name=table)
        op.create_index(f"ix_{table}_resource_pk", table, ["resource_pk", "param"])
