"""Anonymous audit events stored without a client; the client index only over the others.

With auth off (``FHIR_AUTH=none``) every event is anonymous. They were stored
with ``client_id`` 'anonymous'; now NULL (served as 'anonymous', see
``fhir_server.audit.events.ANONYMOUS``), and the (client_id, recorded_us, pk)
index, whose insertion was ~25 % of an event's INSERT (docs/performance.md),
is partial: it leaves them out. ``agent:identifier=<client>`` searches compare
``client_id = ?``, which implies ``IS NOT NULL``, so both databases still use
the index for them.

Revision ID: 0009_audit_client_index_partial
Revises: 0008_audit_derived_ids
"""

import sqlalchemy as sa

from alembic import op

revision = "0009_audit_client_index_partial"
down_revision = "0008_audit_derived_ids"
branch_labels = None
depends_on = None

_NAME = "ix_audit_events_client_id_recorded_us_pk"
_COLUMNS = ["client_id", "recorded_us", "pk"]
_HAS_CLIENT = sa.text("client_id IS NOT NULL")


def upgrade() -> None:
    op.execute("UPDATE audit_events SET client_id = NULL WHERE client_id = 'anonymous'")
    op.drop_index(_NAME, table_name="audit_events")
    op.create_index(_NAME, "audit_events", _COLUMNS, sqlite_where=_HAS_CLIENT, postgresql_where=_HAS_CLIENT)


def downgrade() -> None:
    # the anonymous events keep client_id NULL: the older code serves them without an agent.who
    op.drop_index(_NAME, table_name="audit_events")
    op.create_index(_NAME, "audit_events", _COLUMNS)
