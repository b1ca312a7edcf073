"""Core storage: current resources and every version.

Revision ID: 0001_core
Revises:
"""

import sqlalchemy as sa

from alembic import op

revision = "0001_core"
down_revision = None
branch_labels = None
depends_on = None

BigPk = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# convert_from() is only STABLE (it depends on the database encoding); with a
# fixed source encoding the result is deterministic, so the wrapper may be
# declared IMMUTABLE and feed a generated column.
PG_BODY_FUNCTION = """
CREATE FUNCTION fhir_body_jsonb(body bytea) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT convert_from(body, 'UTF8')::jsonb $$
"""


def upgrade() -> None:
    op.create_table(
        "resources",
        sa.Column("pk", BigPk, primary_key=True, autoincrement=True),
        sa.Column("res_type", sa.String(64), nullable=False),
        sa.Column("res_id", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated_us", sa.BigInteger, nullable=False),
        sa.Column("deleted", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("body", sa.LargeBinary, nullable=True),
        sa.PrimaryKeyConstraint("pk", name="pk_resources"),
        sa.UniqueConstraint("res_type", "res_id", name="uq_resources_res_type_res_id"),
    )
    op.create_index("ix_resources_res_type_updated_us", "resources", ["res_type", "updated_us"])
    op.create_table(
        "resource_versions",
        sa.Column("pk", BigPk, primary_key=True, autoincrement=True),
        sa.Column("res_type", sa.String(64), nullable=False),
        sa.Column("res_id", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated_us", sa.BigInteger, nullable=False),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("deleted", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("body", sa.LargeBinary, nullable=True),
        sa.PrimaryKeyConstraint("pk", name="pk_resource_versions"),
        sa.UniqueConstraint("res_type", "res_id", "version", name="uq_resource_versions_res_type_res_id_version"),
    )
    op.create_index("ix_resource_versions_updated_us", "resource_versions", ["updated_us"])
    op.create_index("ix_resource_versions_res_type_updated_us", "resource_versions", ["res_type", "updated_us"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_BODY_FUNCTION)
        op.execute("ALTER TABLE resources ADD COLUMN content jsonb GENERATED ALWAYS AS (fhir_body_jsonb(body)) STORED")


def downgrade() -> None:
    op.drop_table("resource_versions")
    op.drop_table("resources")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS fhir_body_jsonb(bytea)")
