import sqlalchemy as sa
from searchutil import idset

from fhir_server.search.reindex import reindex
from fhir_server.storage.index_tables import idx_string


def test_reindex_rebuilds_lost_rows_with_progress(store):
    for n in range(7):
        store.put({"resourceType": "Patient", "id": f"p{n}", "name": [{"family": f"Fam{n}"}]})
    store.put({"resourceType": "Encounter", "id": "e", "status": "finished", "class": {"code": "AMB"}})
    with store.engine.begin() as conn:
        conn.execute(sa.delete(idx_string))
    assert idset(store, "Patient", "family=fam") == set()
    calls = []
    n = reindex(store.engine, "Patient", lambda done, total: calls.append((done, total)), batch_size=3)
    assert n == 7
    assert calls == [(3, 7), (6, 7), (7, 7)]
    assert idset(store, "Patient", "family=fam") == {f"p{n}" for n in range(7)}


def test_reindex_in_callers_transaction(store):
    store.put({"resourceType": "Patient", "id": "a", "name": [{"family": "X"}]})
    with store.engine.begin() as conn:
        assert reindex(conn, None, None) == 1
