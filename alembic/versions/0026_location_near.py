"""Location ``near``: the positions of the Locations already stored, indexed.

``Location?near=lat|lon|distance|units`` (search/near.py) reads each Location's ``position`` from
two number rows (``near.latitude``, ``near.longitude`` in ``idx_number``), which later writes
maintain. Before this revision ``near`` was not supported (a lenient search ignored it and
answered every Location).

Revision ID: 0026_location_near
Revises: 0025_index_owner_checks
"""

from alembic import op

revision = "0026_location_near"
down_revision = "0025_index_owner_checks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    from fhir_server.search.near import position_rows
    from fhir_server.storage.migrate import index_stored

    index_stored(
        op.get_bind(),
        ("Location",),
        "idx_number",
        lambda pk, resource: ({"resource_pk": pk, **row} for row in position_rows([("", resource.get("position"))])),
    )


def downgrade() -> None:
    op.execute("DELETE FROM idx_number WHERE param IN ('near.latitude', 'near.longitude')")
