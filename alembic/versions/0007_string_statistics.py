"""PostgreSQL: a finer histogram for string search values.

With the default statistics target, the planner estimated ~670 index rows for a
prefix that matched ~4,900 (`family=Lubis` at 100k Patients) and resolved the
whole semi-join before `ORDER BY pk LIMIT`, 46 ms; with a target of 1000 it walks
pk order with a merge semi-join, 8.6 ms (docs/performance.md).

Revision ID: 0007_string_statistics
Revises: 0006_bulk
"""

from alembic import op

revision = "0007_string_statistics"
down_revision = "0006_bulk"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE idx_string ALTER COLUMN value SET STATISTICS 1000")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE idx_string ALTER COLUMN value SET STATISTICS -1")
