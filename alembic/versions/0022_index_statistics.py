"""PostgreSQL: statistics of the index tables' parameter and value together, so the planner
estimates how many rows one parameter's values match.

With statistics per column the planner multiplies the share of ``param = 'family'`` by the
share of ``value`` in range among the values of every parameter: at 1,000,000 Patients
``family=Santoso`` was estimated at 10,096 rows for 50,027, so the many-matches page
(search/engine.py ``_page_by_count``) sorted all 50,027 keys (717 buffers) instead of walking
the per-resource index in key order until the page was full (46 buffers). A most-common-values
list of the pairs (``CREATE STATISTICS ... (mcv)``) counts the pairs themselves: 34,511.
``ANALYZE`` (after bulk loads, and autovacuum's) fills them. Tokens get the same for
``(param, code)`` (``gender=male``: 240 estimated for 5,044 at 10,000 Patients).

Revision ID: 0022_index_statistics
Revises: 0021_type_key_index
"""

from alembic import op

revision = "0022_index_statistics"
down_revision = "0021_type_key_index"
branch_labels = None
depends_on = None

#: statistics object -> (table, columns)
STATISTICS = {
    "st_idx_string_param_value": ("idx_string", "param, value"),
    "st_idx_token_param_code": ("idx_token", "param, code"),
}


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name, (table, columns) in STATISTICS.items():
            op.execute(f"CREATE STATISTICS {name} (mcv) ON {columns} FROM {table}")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name in STATISTICS:
            op.execute(f"DROP STATISTICS IF EXISTS {name}")
