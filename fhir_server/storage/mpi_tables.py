"""The master patient index's review tables (created by migration ``0013_mpi``).

``mpi_pairs``: one row per pair of Patients the matcher found alike (``a_id < b_id``), with its
grade, score and reasons, and the reviewer's verdict (``not-duplicate`` pairs are never offered
again). ``mpi_scan``: the duplicate scan's checkpoint, so an interrupted scan resumes.
"""

from __future__ import annotations

import sqlalchemy as sa

from fhir_server.mpi.review import PAIR_STATUSES

from .tables import metadata

_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
STATUSES = PAIR_STATUSES

mpi_pairs = sa.Table(
    "mpi_pairs",
    metadata,
    sa.Column("id", _PK, primary_key=True, autoincrement=True),
    sa.Column("a_id", sa.String(64), nullable=False),
    sa.Column("b_id", sa.String(64), nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("grade", sa.String(16), nullable=False),
    sa.Column("reasons", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, server_default="open"),
    sa.Column("found_us", sa.BigInteger, nullable=False),
    sa.Column("reviewed_by", sa.String(64), nullable=True),
    sa.Column("reviewed_us", sa.BigInteger, nullable=True),
    sa.UniqueConstraint("a_id", "b_id", name="uq_mpi_pairs_ab"),
    sa.Index("ix_mpi_pairs_status_score", "status", "score"),
    sa.Index("ix_mpi_pairs_b_id", "b_id"),
    sqlite_autoincrement=True,
)

mpi_scan = sa.Table(
    "mpi_scan",
    metadata,
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("last_pk", sa.BigInteger, nullable=False),
    sa.Column("done", sa.BigInteger, nullable=False),
    sa.Column("started_us", sa.BigInteger, nullable=False),
    sa.Column("updated_us", sa.BigInteger, nullable=False),
    sa.Column("finished", sa.Boolean, nullable=False),
)
