"""``migrate.stored_bodies``: what the data migrations walk (0013, 0018, 0026, 0027)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from fhir_server.storage.migrate import stored_bodies
from tests.conftest import BACKENDS, migrated_database

_ROW = "INSERT INTO resources (res_type, res_id, version, updated_us, deleted, body) VALUES (:t, :i, 1, 1, :d, :b)"


@pytest.mark.parametrize("backend", BACKENDS)
def test_current_bodies_of_the_types_in_key_order_a_batch_at_a_time(backend, tmp_path):
    with migrated_database(backend, tmp_path) as db:
        with db.engine.begin() as conn:
            for n in range(5):
                conn.execute(sa.text(_ROW), {"t": "Patient", "i": f"p{n}", "d": False, "b": f'{{"n": {n}}}'.encode()})
            conn.execute(sa.text(_ROW), {"t": "Patient", "i": "gone", "d": True, "b": None})  # deleted: no body
            conn.execute(sa.text(_ROW), {"t": "Location", "i": "l", "d": False, "b": b"{}"})
        with db.engine.connect() as conn:
            batches = list(stored_bodies(conn, ("Patient",), batch=2))
            everything = [row for rows in stored_bodies(conn) for row in rows]
        assert [[(t, body) for _, t, body in rows] for rows in batches] == [
            [("Patient", b'{"n": 0}'), ("Patient", b'{"n": 1}')],
            [("Patient", b'{"n": 2}'), ("Patient", b'{"n": 3}')],
            [("Patient", b'{"n": 4}')],
        ]
        assert [t for _, t, _ in everything] == ["Patient"] * 5 + ["Location"]
        pks = [pk for pk, _, _ in everything]
        assert pks == sorted(pks) and all(isinstance(body, bytes) for _, _, body in everything)
