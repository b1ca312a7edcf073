"""Audit events without a stored id: event_id optional, its unique index partial.

The server's own events are now written with ``event_id`` NULL and their
AuditEvent.id is derived from ``pk`` and ``recorded_us`` when read
(``fhir_server/audit/ids.py``): generating a uuid and inserting it into a unique
index cost ~1.3 µs per event on SQLite, a quarter of the audit budget
(docs/performance.md). Explicit ids and those of earlier events stay as they are.

Revision ID: 0008_audit_derived_ids
Revises: 0007_string_statistics
"""

import sqlalchemy as sa

from alembic import op

revision = "0008_audit_derived_ids"
down_revision = "0007_string_statistics"
branch_labels = None
depends_on = None

_NOT_NULL = sa.text("event_id IS NOT NULL")
_LOW62 = (1 << 62) - 1


def upgrade() -> None:
    with op.batch_alter_table("audit_events") as batch:  # SQLite: rebuilds the table
        batch.drop_constraint("uq_audit_events_event_id", type_="unique")
        batch.alter_column("event_id", existing_type=sa.String(64), nullable=True)
    op.create_index(
        "ux_audit_events_event_id", "audit_events", ["event_id"], unique=True, sqlite_where=_NOT_NULL, postgresql_where=_NOT_NULL
    )


def _derived_id(recorded_us: int, pk: int) -> str:
    # the same as fhir_server.audit.ids.derived_event_id (a migration does not import the app)
    ms = recorded_us // 1000
    v = (ms << 80) | (0x7 << 76) | ((pk >> 62) << 64) | (0b10 << 62) | (pk & _LOW62)
    h = f"{v:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def downgrade() -> None:
    # store the derived ids, so every event keeps the id it was served with
    conn = op.get_bind()
    t = sa.table("audit_events", sa.column("pk"), sa.column("recorded_us"), sa.column("event_id"))
    while True:
        rows = conn.execute(sa.select(t.c.pk, t.c.recorded_us).where(t.c.event_id.is_(None)).limit(10_000)).all()
        if not rows:
            break
        conn.execute(
            t.update().where(t.c.pk == sa.bindparam("b_pk")).values(event_id=sa.bindparam("b_id")),
            [{"b_pk": pk, "b_id": _derived_id(us, pk)} for pk, us in rows],
        )
    op.drop_index("ux_audit_events_event_id", table_name="audit_events")
    with op.batch_alter_table("audit_events") as batch:
        batch.alter_column("event_id", existing_type=sa.String(64), nullable=False)
        batch.create_unique_constraint("uq_audit_events_event_id", ["event_id"])
