"""Authorisation: registered clients, used client-assertion ids, the token signing key.

Revision ID: 0004_auth
Revises: 0003_conditional_keys

Mirrors ``fhir_server/storage/auth_tables.py`` (same names, columns and constraints).
"""

import sqlalchemy as sa

from alembic import op

revision = "0004_auth"
down_revision = "0003_conditional_keys"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "auth_clients",
        sa.Column("client_id", sa.String(128), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("secret_hash", sa.String(255), nullable=True),
        sa.Column("scopes", sa.Text, nullable=False),
        sa.Column("jwks", sa.Text, nullable=True),
        sa.Column("organization_id", sa.String(64), nullable=True),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("revoked_us", sa.BigInteger, nullable=True),
        sa.PrimaryKeyConstraint("client_id", name="pk_auth_clients"),
    )
    op.create_table(
        "auth_used_jtis",
        sa.Column("client_id", sa.String(128), nullable=False),
        sa.Column("jti", sa.String(255), nullable=False),
        sa.Column("expires_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("client_id", "jti", name="pk_auth_used_jtis"),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["auth_clients.client_id"],
            name="fk_auth_used_jtis_client_id_auth_clients",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_auth_used_jtis_expires_us", "auth_used_jtis", ["expires_us"])
    op.create_table(
        "auth_signing_keys",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("kid", sa.String(64), nullable=False),
        sa.Column("alg", sa.String(16), nullable=False),
        sa.Column("secret", sa.LargeBinary, nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_auth_signing_keys"),
    )


def downgrade() -> None:
    op.drop_table("auth_signing_keys")
    op.drop_index("ix_auth_used_jtis_expires_us", table_name="auth_used_jtis")
    op.drop_table("auth_used_jtis")
    op.drop_table("auth_clients")
