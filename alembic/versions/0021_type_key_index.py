"""PostgreSQL: the keys of the current resources of each type in key order, ``resources (res_type,
pk) WHERE NOT deleted``.

A search with many matches (search/engine.py ``_page_by_count``) walks the resources of its type in
key order until it has a page. Through ``pk_resources`` that walk visited every row of every type
in between, each in the table (with 3 Encounters per Patient, four rows for each Patient walked);
through this index it reads only the type's keys, from the index, and the table only for the
page's rows. SQLite keeps its plans (search/engine.py writes ``+r.res_type`` there) and gets no
index.

Revision ID: 0021_type_key_index
Revises: 0020_probe_indexes
"""

import sqlalchemy as sa

from alembic import op

revision = "0021_type_key_index"
down_revision = "0020_probe_indexes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.create_index("ix_resources_res_type_pk", "resources", ["res_type", "pk"], postgresql_where=sa.text("NOT deleted"))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_resources_res_type_pk", table_name="resources")
