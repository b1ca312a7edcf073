"""The reference index also holds the references no search parameter covers (inside extensions,
contained resources, unsearchable elements), under the pseudo-parameter ``-other``, so that
``Patient/$merge`` finds and rewrites them (docs/mpi.md). Filled here for the resources already
stored; later writes maintain them.

Revision ID: 0018_other_references
Revises: 0017_subscription_websockets
"""

import orjson
import sqlalchemy as sa

from alembic import op

revision = "0018_other_references"
down_revision = "0017_subscription_websockets"
branch_labels = None
depends_on = None

_BATCH = 2000
_COLUMNS = ("param", "target_type", "target_id", "target_version", "url", "id_system", "id_value")


def upgrade() -> None:
    from fhir_server.search.extract import other_reference_rows
    from fhir_server.storage.migrate import stored_bodies

    conn = op.get_bind()
    for rows in stored_bodies(conn, None, _BATCH):
        bodies = [(pk, body) for pk, res_type, body in rows if res_type != "Bundle" and b'"reference"' in body]
        if not bodies:
            continue
        covered: dict[int, list[dict]] = {}
        found = conn.execute(
            sa.text("SELECT resource_pk, target_type, target_id, url FROM idx_reference WHERE resource_pk IN :pks").bindparams(
                sa.bindparam("pks", expanding=True)
            ),
            {"pks": [pk for pk, _ in bodies]},
        )
        for pk, target_type, target_id, url in found:
            covered.setdefault(pk, []).append({"target_type": target_type, "target_id": target_id, "url": url})
        new = [{"resource_pk": pk, **row} for pk, body in bodies for row in other_reference_rows(orjson.loads(body), covered.get(pk, []))]
        if new:
            cols = ", ".join(("resource_pk", *_COLUMNS))
            values = ", ".join(f":{c}" for c in ("resource_pk", *_COLUMNS))
            conn.execute(sa.text(f"INSERT INTO idx_reference ({cols}) VALUES ({values})"), new)


def downgrade() -> None:
    op.execute("DELETE FROM idx_reference WHERE param = '-other'")
