"""PostgreSQL: the ``(param, code)`` statistics of ``idx_token`` keep the 1,000 most common pairs
(the default target keeps 100).

A code neither rare nor among the 100 most common was estimated as rare: ``phonetic`` pair keys
(alembic 0028) of 3,359 Patients each at 1,000,000 were estimated at 99 rows, so the page of one
criterion past its count (search/engine.py ``_page_by_count``) probed every match's row before
sorting (36.7 ms) instead of walking the type's keys in order (4.9 ms with the estimate 3,147).
``ANALYZE idx_token`` then samples 300,000 rows instead of 30,000 (3.3 s at 15,000,000 rows on a
slow machine); it is run here once, so the plans are right at once.

Revision ID: 0029_token_statistics_target
Revises: 0028_phonetic_pairs
"""

from alembic import op

revision = "0029_token_statistics_target"
down_revision = "0028_phonetic_pairs"
branch_labels = None
depends_on = None

TARGET = 1000


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER STATISTICS st_idx_token_param_code SET STATISTICS {TARGET}")
        op.execute("ANALYZE idx_token")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER STATISTICS st_idx_token_param_code SET STATISTICS -1")
