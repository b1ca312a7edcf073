"""Reference index rows: the canonical-URL and ``:identifier`` indexes hold only the rows that
have one.

``ix_idx_reference_param_url`` and ``ix_idx_reference_param_identifier`` indexed every reference
row, although ``url`` is set only for canonical and foreign absolute references and ``id_value``
only for ``Reference.identifier``: in the Synthea sample 13 and 172 of 33,485 rows. Every other
row was an entry ``(param, NULL)`` no search asks for (a search compares ``url = ?`` or
``id_value = ?``, which implies the value is not null, so both engines still use the indexes),
and two of the six B-trees each reference row went into. Measured with ``bench.ab`` (one
client, the Synthea ingest, B/A of the request time): SQLite 0.974, 0.990, 0.980; PostgreSQL
0.980, 0.990.

Revision ID: 0023_partial_reference_indexes
Revises: 0022_index_statistics
"""

import sqlalchemy as sa

from alembic import op

revision = "0023_partial_reference_indexes"
down_revision = "0022_index_statistics"
branch_labels = None
depends_on = None

#: index -> (columns, the column a row must have)
INDEXES = {
    "ix_idx_reference_param_url": (["param", "url"], "url"),
    "ix_idx_reference_param_identifier": (["param", "id_value", "id_system"], "id_value"),
}


def upgrade() -> None:
    for name, (columns, present) in INDEXES.items():
        where = sa.text(f"{present} IS NOT NULL")
        op.drop_index(name, table_name="idx_reference")
        op.create_index(name, "idx_reference", columns, sqlite_where=where, postgresql_where=where)


def downgrade() -> None:
    for name, (columns, _) in INDEXES.items():
        op.drop_index(name, table_name="idx_reference")
        op.create_index(name, "idx_reference", columns)
