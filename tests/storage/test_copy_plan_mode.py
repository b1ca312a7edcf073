"""PostgreSQL: the index rows a write transaction defers go in by COPY with ``plan_cache_mode =
auto``, and everything else in the transaction keeps the engine's ``force_custom_plan``.

The index rows' owners in ``resources`` were checked by a query PostgreSQL ran for each row (a
foreign key; since alembic 0025 one check per statement). Under ``force_custom_plan`` (set on every
pooled connection for the searches' sake, storage/db.py) that query was planned again for every
row: perf had the planning at ~17 % of PostgreSQL's CPU in ``fhir-server import`` of the Synthea
sample. With ``auto`` the backend plans it once and keeps the plan; the claimed rows' ``UPDATE``
too.
"""

from __future__ import annotations

import uuid

import orjson
import pytest

from tests.conftest import BACKENDS

pytestmark = [
    pytest.mark.skipif("postgresql" not in BACKENDS, reason="needs FHIR_TEST_POSTGRES_URL"),
    pytest.mark.parametrize("backend_url", ["postgresql"], indirect=True),
]
H = {"Content-Type": "application/fhir+json"}

_SPY = """
CREATE TABLE plan_mode_seen (tbl text, mode text);
CREATE FUNCTION plan_mode_spy() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO plan_mode_seen VALUES (TG_TABLE_NAME, current_setting('plan_cache_mode'));
  RETURN NEW;
END $$;
CREATE TRIGGER plan_mode_spy_token BEFORE INSERT ON idx_token FOR EACH ROW EXECUTE FUNCTION plan_mode_spy();
CREATE TRIGGER plan_mode_spy_change BEFORE INSERT ON change_log FOR EACH ROW EXECUTE FUNCTION plan_mode_spy();
"""
_UNSPY = """
DROP TRIGGER plan_mode_spy_token ON idx_token;
DROP TRIGGER plan_mode_spy_change ON change_log;
DROP FUNCTION plan_mode_spy();
DROP TABLE plan_mode_seen;
"""


@pytest.fixture
def spied(client):
    state = client.app.state.fhir
    assert state.db.dialect == "postgresql"
    with state.db.engine.begin() as conn:
        conn.exec_driver_sql(_SPY)
    yield client, state
    with state.db.engine.begin() as conn:
        conn.exec_driver_sql(_UNSPY)


def test_index_rows_are_copied_with_plans_kept_and_the_rest_keeps_custom_plans(spied):
    client, state = spied
    tag = uuid.uuid4().hex[:8]
    entries = [
        {
            "resource": {"resourceType": "Patient", "id": f"pm-{tag}-{n}", "identifier": [{"system": "urn:pm", "value": f"{tag}-{n}"}]},
            "request": {"method": "PUT", "url": f"Patient/pm-{tag}-{n}"},
        }
        for n in range(5)
    ]
    r = client.post("/fhir", content=orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries}), headers=H)
    assert r.status_code == 200, r.text
    with state.db.engine.connect() as conn:
        seen = conn.exec_driver_sql("SELECT tbl, mode FROM plan_mode_seen").all()
        after = conn.exec_driver_sql("SHOW plan_cache_mode").scalar_one()
    token_modes = {mode for tbl, mode in seen if tbl == "idx_token"}
    change_modes = {mode for tbl, mode in seen if tbl == "change_log"}
    assert token_modes == {"auto"}, seen  # the COPY of the index rows
    assert change_modes == {"force_custom_plan"}, seen  # written after the COPY, in the same transaction
    assert after == "force_custom_plan"  # a pooled connection keeps the searches' mode
    found = client.get("/fhir/Patient", params={"identifier": f"urn:pm|{tag}-3"}).json()
    assert [e["resource"]["id"] for e in found["entry"]] == [f"pm-{tag}-3"]
