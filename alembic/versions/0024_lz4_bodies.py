"""PostgreSQL: the stored bodies are compressed with LZ4 instead of pglz.

A body over ~2 kB (most Encounters and DocumentReferences, every base64 attachment) is
compressed when it is stored, in ``resources.body``, its ``content`` jsonb mirror and
``resource_versions.body``: three times per write. pglz was ~10 % of PostgreSQL's CPU in
``fhir-server import`` of the Synthea sample (``perf``: ``pglz_compress`` its top function).
With LZ4 (PostgreSQL 14+, when built with it: Debian's and the official images are) the same
import used 1.52 s of PostgreSQL CPU instead of 1.73-1.97 s, took 2.02 s instead of 2.28-2.63 s,
and the two tables were 37 MB instead of 41 MB. Only values stored from now on are LZ4; older
ones stay pglz and are read as before (each value records its method). A server whose
PostgreSQL lacks LZ4 keeps pglz.

Revision ID: 0024_lz4_bodies
Revises: 0023_partial_reference_indexes
"""

import sqlalchemy as sa

from alembic import op

revision = "0024_lz4_bodies"
down_revision = "0023_partial_reference_indexes"
branch_labels = None
depends_on = None

#: table -> its columns of stored bodies
COLUMNS = {"resources": ("body", "content"), "resource_versions": ("body",)}


def _lz4_available(bind: sa.Connection) -> bool:
    """Whether this PostgreSQL can compress with LZ4 (only a build with it lists it)."""
    if bind.dialect.name != "postgresql":
        return False
    values = bind.exec_driver_sql("SELECT enumvals FROM pg_settings WHERE name = 'default_toast_compression'").scalar()
    return bool(values) and "lz4" in values


def _set(method: str) -> None:
    bind = op.get_bind()
    if not _lz4_available(bind):
        return
    for table, columns in COLUMNS.items():
        for column in columns:
            op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET COMPRESSION {method}")


def upgrade() -> None:
    _set("lz4")


def downgrade() -> None:
    _set("default")
