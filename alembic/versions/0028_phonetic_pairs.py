"""``phonetic``: every pair of a name's sound keys indexed as well, for the resources already stored.

A search value of two tokens is then one look-up of their pair instead of an intersection of the
two keys' rows (search/phonetic.py). The rows of revision 0027 are written again with the pairs.

Revision ID: 0028_phonetic_pairs
Revises: 0027_phonetic
"""

import sqlalchemy as sa

from alembic import op

revision = "0028_phonetic_pairs"
down_revision = "0027_phonetic"
branch_labels = None
depends_on = None


def upgrade() -> None:
    from fhir_server.search.phonetic import TYPES, stored_rows
    from fhir_server.storage.migrate import index_stored

    conn = op.get_bind()
    conn.execute(sa.text("DELETE FROM idx_token WHERE param = 'phonetic'"))
    index_stored(conn, TYPES, "idx_token", stored_rows)


def downgrade() -> None:
    op.execute("DELETE FROM idx_token WHERE param = 'phonetic' AND code LIKE '% %'")
