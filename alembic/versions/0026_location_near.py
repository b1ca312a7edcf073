"""Location ``near``: the positions of the Locations already stored, indexed.

``Location?near=lat|lon|distance|units`` (search/near.py) reads each Location's ``position`` from
two number rows (``near.latitude``, ``near.longitude`` in ``idx_number``), which later writes
maintain. Before this revision ``near`` was not supported (a lenient search ignored it and
answered every Location).

Revision ID: 0026_location_near
Revises: 0025_index_owner_checks
"""

import orjson
import sqlalchemy as sa

from alembic import op

revision = "0026_location_near"
down_revision = "0025_index_owner_checks"
branch_labels = None
depends_on = None

_BATCH = 2000


def upgrade() -> None:
    from fhir_server.search.near import position_rows

    conn = op.get_bind()
    last = -1
    while True:
        rows = conn.execute(
            sa.text("SELECT pk, body FROM resources WHERE res_type = 'Location' AND deleted = :f AND pk > :last ORDER BY pk LIMIT :n"),
            {"f": False, "last": last, "n": _BATCH},
        ).all()
        if not rows:
            return
        found = [
            {"pk": pk, **row}
            for pk, body in rows
            if body is not None
            for row in position_rows([("", orjson.loads(bytes(body)).get("position"))])
        ]
        if found:
            conn.execute(
                sa.text("INSERT INTO idx_number (resource_pk, param, value, lo, hi) VALUES (:pk, :param, :value, :lo, :hi)"), found
            )
        last = rows[-1][0]


def downgrade() -> None:
    op.execute("DELETE FROM idx_number WHERE param IN ('near.latitude', 'near.longitude')")
