"""Change-log consumers (cursors, claimed partitions) and subscriptions.

Revision ID: 0011_subscriptions
Revises: 0010_change_log
"""

import sqlalchemy as sa

from alembic import op

revision = "0011_subscriptions"
down_revision = "0010_change_log"
branch_labels = None
depends_on = None

_BIG_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "change_cursors",
        sa.Column("consumer", sa.String(64), nullable=False),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.Column("lease_owner", sa.String(128), nullable=True),
        sa.Column("lease_until_us", sa.BigInteger, nullable=True),
        sa.Column("updated_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("consumer", name="pk_change_cursors"),
    )
    op.create_table(
        "work_partitions",
        sa.Column("queue", sa.String(32), nullable=False),
        sa.Column("partition", sa.String(128), nullable=False),
        sa.Column("wanted_us", sa.BigInteger, nullable=True),
        sa.Column("retry_at_us", sa.BigInteger, nullable=True),
        sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("paused", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("lease_owner", sa.String(128), nullable=True),
        sa.Column("lease_until_us", sa.BigInteger, nullable=True),
        sa.PrimaryKeyConstraint("queue", "partition", name="pk_work_partitions"),
    )
    op.create_index("ix_work_partitions_queue_wanted_us", "work_partitions", ["queue", "wanted_us"])
    op.create_table(
        "subscription_state",
        sa.Column("sub_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("client_id", sa.String(128), nullable=True),
        sa.Column("res_type", sa.String(64), nullable=False),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("secrets", sa.Text, nullable=True),
        sa.Column("start_seq", sa.BigInteger, nullable=True),
        sa.Column("events", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("delivered", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("last_sent_us", sa.BigInteger, nullable=True),
        sa.Column("updated_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("sub_id", name="pk_subscription_state"),
    )
    op.create_index("ix_subscription_state_res_type", "subscription_state", ["res_type"])
    op.create_table(
        "subscription_events",
        sa.Column("sub_id", sa.String(64), nullable=False),
        sa.Column("event_number", sa.BigInteger, nullable=False),
        sa.Column("change_seq", sa.BigInteger, nullable=False),
        sa.Column("res_type", sa.String(64), nullable=False),
        sa.Column("res_id", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("action", sa.String(8), nullable=False),
        sa.Column("recorded_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("sub_id", "event_number", name="pk_subscription_events"),
    )
    op.create_table(
        "subscription_deliveries",
        sa.Column("id", _BIG_PK, autoincrement=True),
        sa.Column("sub_id", sa.String(64), nullable=False),
        sa.Column("notification_id", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("first_event", sa.BigInteger, nullable=True),
        sa.Column("last_event", sa.BigInteger, nullable=True),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("started_us", sa.BigInteger, nullable=False),
        sa.Column("duration_us", sa.BigInteger, nullable=False),
        sa.Column("http_status", sa.Integer, nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_subscription_deliveries"),
    )
    op.create_index("ix_subscription_deliveries_sub_id_id", "subscription_deliveries", ["sub_id", "id"])
    op.create_table(
        "subscription_ws_tokens",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("sub_ids", sa.Text, nullable=False),
        sa.Column("client_id", sa.String(128), nullable=True),
        sa.Column("expires_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("token_hash", name="pk_subscription_ws_tokens"),
    )


def downgrade() -> None:
    op.drop_table("subscription_ws_tokens")
    op.drop_index("ix_subscription_deliveries_sub_id_id", table_name="subscription_deliveries")
    op.drop_table("subscription_deliveries")
    op.drop_table("subscription_events")
    op.drop_index("ix_subscription_state_res_type", table_name="subscription_state")
    op.drop_table("subscription_state")
    op.drop_index("ix_work_partitions_queue_wanted_us", table_name="work_partitions")
    op.drop_table("work_partitions")
    op.drop_table("change_cursors")
