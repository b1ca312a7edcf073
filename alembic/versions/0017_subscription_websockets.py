"""Subscriptions: the websocket channel (binding generation, client acknowledgements) and
``Subscription.end`` as a column the worker sweeps.

Revision ID: 0017_subscription_websockets
Revises: 0016_satusehat
"""

import sqlalchemy as sa

from alembic import op

revision = "0017_subscription_websockets"
down_revision = "0016_satusehat"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subscription_state") as batch:
        batch.add_column(sa.Column("ws_binding", sa.BigInteger, nullable=False, server_default="0"))
        batch.add_column(sa.Column("acked", sa.BigInteger, nullable=True))
        batch.add_column(sa.Column("end_us", sa.BigInteger, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("subscription_state") as batch:
        batch.drop_column("end_us")
        batch.drop_column("acked")
        batch.drop_column("ws_binding")
