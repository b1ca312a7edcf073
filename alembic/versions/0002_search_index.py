"""Search index: typed index rows (token, string, date, reference, number, quantity, uri, composite).

Revision ID: 0002_search_index
Revises: 0001_core

Mirrors ``fhir_server/storage/index_tables.py`` (same names, columns and indexes).
"""

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision = "0002_search_index"
down_revision = "0001_core"
branch_labels = None
depends_on = None

CText = sa.Text().with_variant(postgresql.TEXT(collation="C"), "postgresql")
PkRef = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# table -> (extra columns, {index name: columns})
TABLES = {
    "idx_token": (
        lambda: [
            sa.Column("system", CText, nullable=True),
            sa.Column("code", CText, nullable=True),
            sa.Column("text", sa.Text, nullable=True),
        ],
        {"ix_idx_token_param_code_system": ["param", "code", "system", "resource_pk"]},
    ),
    "idx_string": (
        lambda: [sa.Column("value", CText, nullable=False), sa.Column("exact", sa.Text, nullable=False)],
        {"ix_idx_string_param_value": ["param", "value", "resource_pk"]},
    ),
    "idx_date": (
        lambda: [sa.Column("lo", sa.BigInteger, nullable=False), sa.Column("hi", sa.BigInteger, nullable=False)],
        {"ix_idx_date_param_lo": ["param", "lo", "hi", "resource_pk"], "ix_idx_date_param_hi": ["param", "hi", "lo", "resource_pk"]},
    ),
    "idx_reference": (
        lambda: [
            sa.Column("target_type", sa.String(64), nullable=True),
            sa.Column("target_id", CText, nullable=True),
            sa.Column("target_version", sa.String(64), nullable=True),
            sa.Column("url", CText, nullable=True),
            sa.Column("id_system", CText, nullable=True),
            sa.Column("id_value", CText, nullable=True),
        ],
        {
            "ix_idx_reference_param_target": ["param", "target_id", "target_type", "resource_pk"],
            "ix_idx_reference_target": ["target_type", "target_id"],
            "ix_idx_reference_param_url": ["param", "url"],
            "ix_idx_reference_param_identifier": ["param", "id_value", "id_system"],
        },
    ),
    "idx_number": (
        lambda: [
            sa.Column("value", sa.Float, nullable=False),
            sa.Column("lo", sa.Float, nullable=False),
            sa.Column("hi", sa.Float, nullable=False),
        ],
        {"ix_idx_number_param_value": ["param", "value"]},
    ),
    "idx_quantity": (
        lambda: [
            sa.Column("value", sa.Float, nullable=False),
            sa.Column("lo", sa.Float, nullable=False),
            sa.Column("hi", sa.Float, nullable=False),
            sa.Column("system", CText, nullable=True),
            sa.Column("code", CText, nullable=True),
            sa.Column("unit", sa.Text, nullable=True),
        ],
        {"ix_idx_quantity_param_value": ["param", "value"]},
    ),
    "idx_uri": (
        lambda: [sa.Column("value", CText, nullable=False)],
        {"ix_idx_uri_param_value": ["param", "value"]},
    ),
    "idx_composite": (
        lambda: [
            sa.Column("c1_system", CText, nullable=True),
            sa.Column("c1_code", CText, nullable=True),
            sa.Column("c2_system", CText, nullable=True),
            sa.Column("c2_code", CText, nullable=True),
            sa.Column("c2_value", sa.Float, nullable=True),
            sa.Column("c2_lo", sa.BigInteger, nullable=True),
            sa.Column("c2_hi", sa.BigInteger, nullable=True),
            sa.Column("c2_text", CText, nullable=True),
        ],
        {"ix_idx_composite_param_c1": ["param", "c1_code", "c1_system"]},
    ),
}


def upgrade() -> None:
    for name, (columns, indexes) in TABLES.items():
        op.create_table(
            name,
            sa.Column("resource_pk", PkRef, nullable=False),
            sa.Column("param", sa.String(64), nullable=False),
            *columns(),
            sa.ForeignKeyConstraint(["resource_pk"], ["resources.pk"], ondelete="CASCADE", name=f"fk_{name}_resource_pk_resources"),
        )
        for ix, cols in indexes.items():
            op.create_index(ix, name, cols)
        # (resource_pk, param): row replacement, cascades and per-resource sort keys
        op.create_index(f"ix_{name}_resource_pk", name, ["resource_pk", "param"])


def downgrade() -> None:
    for name in reversed(list(TABLES)):
        op.drop_table(name)
