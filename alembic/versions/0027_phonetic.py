"""``phonetic``: the name keys of the Patients, Practitioners, Persons and RelatedPersons already
stored, indexed.

``Patient?phonetic=...`` (search/phonetic.py) reads each name's sound keys from ``idx_token`` rows
(param ``phonetic``), which later writes maintain. Before this revision ``phonetic`` was not
supported (a lenient search ignored it and answered every Patient).

Revision ID: 0027_phonetic
Revises: 0026_location_near
"""

import orjson
import sqlalchemy as sa

from alembic import op

revision = "0027_phonetic"
down_revision = "0026_location_near"
branch_labels = None
depends_on = None

TYPES = ("Patient", "Person", "Practitioner", "RelatedPerson")


def upgrade() -> None:
    from fhir_server.search.phonetic import phonetic_rows
    from fhir_server.storage.migrate import stored_bodies

    conn = op.get_bind()
    for rows in stored_bodies(conn, TYPES):
        found = []
        for pk, _, body in rows:
            names = orjson.loads(body).get("name")
            if isinstance(names, list):
                found.extend({"pk": pk, "code": row["code"]} for row in phonetic_rows("phonetic", [("HumanName", n) for n in names]))
        if found:
            conn.execute(sa.text("INSERT INTO idx_token (resource_pk, param, code) VALUES (:pk, 'phonetic', :code)"), found)


def downgrade() -> None:
    op.execute("DELETE FROM idx_token WHERE param = 'phonetic'")
