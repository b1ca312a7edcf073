"""Master patient index: the blocking-key index table ``idx_mpi``, filled for existing Patients.

Revision ID: 0011_mpi_blocking_keys
Revises: 0010_change_log
"""

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision = "0011_mpi_blocking_keys"
down_revision = "0010_change_log"
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


def _backfill(conn: sa.Connection) -> None:
    """Keys for the Patients already stored (later writes maintain them)."""
    from fhir_server.mpi.blocking import stored_keys
    from fhir_server.mpi.features import extract

    last = -1
    while True:
        rows = conn.execute(
            sa.text("SELECT pk, body FROM resources WHERE res_type = 'Patient' AND deleted = :f AND pk > :last ORDER BY pk LIMIT :n"),
            {"f": False, "last": last, "n": _BATCH},
        ).all()
        if not rows:
            return
        keys = [{"pk": pk, "key": key} for pk, body in rows if body is not None for key in stored_keys(extract(orjson.loads(bytes(body))))]
        if keys:
            conn.execute(sa.text("INSERT INTO idx_mpi (resource_pk, key) VALUES (:pk, :key)"), keys)
        last = rows[-1][0]


def downgrade() -> None:
    op.drop_index("ix_idx_mpi_resource_pk", table_name="idx_mpi")
    op.drop_index("ix_idx_mpi_key", table_name="idx_mpi")
    op.drop_table("idx_mpi")
