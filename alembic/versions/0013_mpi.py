"""Master patient index: the blocking-key index table ``idx_mpi`` (filled for existing Patients),
the duplicate pairs to review (``mpi_pairs``) and the duplicate scan's checkpoint (``mpi_scan``).

Revision ID: 0013_mpi
Revises: 0012_export_job_options
"""

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision = "0013_mpi"
down_revision = "0012_export_job_options"
branch_labels = None
depends_on = None

_PK_REF = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_BATCH = 2000


def upgrade() -> None:
    text = sa.Text().with_variant(postgresql.TEXT(collation="C"), "postgresql")
    op.create_table(
        "idx_mpi",
        sa.Column("resource_pk", _PK_REF, sa.ForeignKey("resources.pk", ondelete="CASCADE"), nullable=False),
        sa.Column("key", text, nullable=False),
    )
    op.create_index("ix_idx_mpi_key", "idx_mpi", ["key", "resource_pk"])
    op.create_index("ix_idx_mpi_resource_pk", "idx_mpi", ["resource_pk"])
    _backfill(op.get_bind())
    op.create_table(
        "mpi_pairs",
        sa.Column("id", _PK_REF, autoincrement=True),
        # the two Patients' ids, a_id < b_id: one row per pair
        sa.Column("a_id", sa.String(64), nullable=False),
        sa.Column("b_id", sa.String(64), nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("grade", sa.String(16), nullable=False),
        sa.Column("reasons", sa.Text, nullable=False),
        # open | not-duplicate (a reviewer's verdict: never offered again) | merged
        sa.Column("status", sa.String(16), nullable=False, server_default="open"),
        sa.Column("found_us", sa.BigInteger, nullable=False),
        sa.Column("reviewed_by", sa.String(64), nullable=True),
        sa.Column("reviewed_us", sa.BigInteger, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_mpi_pairs"),
        sa.UniqueConstraint("a_id", "b_id", name="uq_mpi_pairs_ab"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_mpi_pairs_status_score", "mpi_pairs", ["status", "score"])
    op.create_index("ix_mpi_pairs_b_id", "mpi_pairs", ["b_id"])
    op.create_table(
        "mpi_scan",
        sa.Column("name", sa.String(32), nullable=False),
        # the last Patient row key scored: a scan resumes after it
        sa.Column("last_pk", sa.BigInteger, nullable=False),
        sa.Column("done", sa.BigInteger, nullable=False),
        sa.Column("started_us", sa.BigInteger, nullable=False),
        sa.Column("updated_us", sa.BigInteger, nullable=False),
        sa.Column("finished", sa.Boolean, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_mpi_scan"),
    )


def _backfill(conn: sa.Connection) -> None:
    """Keys for the Patients already stored (later writes maintain them)."""
    from fhir_server.mpi.blocking import stored_keys
    from fhir_server.mpi.features import extract
    from fhir_server.storage.migrate import stored_bodies

    for rows in stored_bodies(conn, ("Patient",), _BATCH):
        keys = [{"pk": pk, "key": key} for pk, _, body in rows for key in stored_keys(extract(orjson.loads(body)))]
        if keys:
            conn.execute(sa.text("INSERT INTO idx_mpi (resource_pk, key) VALUES (:pk, :key)"), keys)


def downgrade() -> None:
    op.drop_table("mpi_scan")
    op.drop_index("ix_mpi_pairs_b_id", table_name="mpi_pairs")
    op.drop_index("ix_mpi_pairs_status_score", table_name="mpi_pairs")
    op.drop_table("mpi_pairs")
    op.drop_index("ix_idx_mpi_resource_pk", table_name="idx_mpi")
    op.drop_index("ix_idx_mpi_key", table_name="idx_mpi")
    op.drop_table("idx_mpi")
