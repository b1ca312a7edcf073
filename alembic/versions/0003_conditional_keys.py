"""Race guard for conditional create.

Revision ID: 0003_conditional_keys
Revises: 0002_search_index
"""

import sqlalchemy as sa

from alembic import op

revision = "0003_conditional_keys"
down_revision = "0002_search_index"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "conditional_keys",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("res_type", sa.String(64), nullable=False),
        sa.Column("resource_pk", sa.BigInteger, nullable=True),
        sa.PrimaryKeyConstraint("key", name="pk_conditional_keys"),
        sa.ForeignKeyConstraint(["resource_pk"], ["resources.pk"], name="fk_conditional_keys_resource_pk_resources", ondelete="CASCADE"),
    )


def downgrade() -> None:
    op.drop_table("conditional_keys")
