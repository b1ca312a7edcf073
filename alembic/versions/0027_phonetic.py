"""``phonetic``: the name keys of the Patients, Practitioners, Persons and RelatedPersons already
stored, indexed.

``Patient?phonetic=...`` (search/phonetic.py) reads each name's sound keys from ``idx_token`` rows
(param ``phonetic``), which later writes maintain. Before this revision ``phonetic`` was not
supported (a lenient search ignored it and answered every Patient).

Revision ID: 0027_phonetic
Revises: 0026_location_near
"""

from alembic import op

revision = "0027_phonetic"
down_revision = "0026_location_near"
branch_labels = None
depends_on = None


def upgrade() -> None:
    from fhir_server.search.phonetic import TYPES, stored_rows
    from fhir_server.storage.migrate import index_stored

    conn = op.get_bind()
    index_stored(conn, TYPES, "idx_token", stored_rows)


def downgrade() -> None:
    op.execute("DELETE FROM idx_token WHERE param = 'phonetic'")
