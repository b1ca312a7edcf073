"""The page statement that picks its plan by the number of matches (search/engine.py ``_page_by_count``,
PostgreSQL) answers
exactly what the plain statement answers: same resources, same order, same pages, deleted ones
left out, several criteria intersected, one row per resource however many of its values match.
On SQLite the plain statement always runs and the answers are the same (the ``client`` fixture
runs both)."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from searchutil import ids, keys_read, plan_nodes, planned_search, sqlite_plan

from fhir_server.search import engine
from tests.conftest import index_definition

FHIR_JSON = {"Content-Type": "application/fhir+json"}


def _all_pages(client, query: str) -> list[str]:
    ids: list[str] = []
    url = f"/fhir/Patient?{query}"
    for _ in range(20):
        body = client.get(url).json()
        assert body["resourceType"] == "Bundle", body
        ids.extend(e["resource"]["id"] for e in body.get("entry", []))
        nxt = [link["url"] for link in body.get("link", []) if link["relation"] == "next"]
        if not nxt:
            return ids
        parts = urlsplit(nxt[0])
        url = f"{parts.path}?{parts.query}"
    raise AssertionError("more pages than expected")


@pytest.fixture
def patients(client) -> None:
    for n in range(9):
        birth = f"1980-05-{10 + n:02d}" if n < 7 else "1990-01-01"
        body = {"resourceType": "Patient", "id": f"p{n}", "birthDate": birth, "gender": "female" if n % 2 else "male"}
        assert client.put(f"/fhir/Patient/p{n}", json=body, headers=FHIR_JSON).status_code == 201
    assert client.delete("/fhir/Patient/p3").status_code in (200, 204)


@pytest.fixture
def ways(monkeypatch) -> list[bool]:
    """True per page statement written by ``engine._page_by_count``."""
    seen: list[bool] = []
    real = engine._index_subqueries

    def spy(criteria):
        found = real(criteria)
        seen.append(found is not None)
        return found

    monkeypatch.setattr(engine, "_index_subqueries", spy)
    return seen


def _plain(monkeypatch) -> None:
    monkeypatch.setattr(engine, "_index_subqueries", lambda criteria: None)


QUERIES = [
    "birthdate=ge1980-05-01&birthdate=le1980-05-31&_count=2",
    "birthdate=ge1980-05-01&birthdate=le1980-05-31&gender=female&_count=2",
    "birthdate=ge2000-01-01&_count=2",
    "birthdate=ge1980-01-01&_count=3",
    "gender=male&_count=1",
    "gender=male,female&birthdate=ge1980-05-12&_count=2",
]


# the few-matches arm; with several criteria, the one of fewest keys walked (cap 3: gender=female's
# three, not May's six births); the walk in key order
@pytest.mark.parametrize("cap", [engine.PILOT_CAP, 3, 1])
def test_pages_are_the_same_either_way(client, patients, monkeypatch, ways, cap):
    monkeypatch.setattr(engine, "PILOT_CAP", cap)
    in_may = _all_pages(client, QUERIES[0])
    assert sorted(in_may) == ["p0", "p1", "p2", "p4", "p5", "p6"]  # p3 was deleted
    assert len(set(in_may)) == len(in_may)
    assert sorted(_all_pages(client, QUERIES[1])) == ["p1", "p5"]
    assert _all_pages(client, QUERIES[2]) == []
    joined = [_all_pages(client, q) for q in QUERIES]
    # every page's criteria are index look-ups: PostgreSQL writes the page by its counts; SQLite
    # does for several criteria, and runs the plain statement for one
    assert ways and all(ways)
    _plain(monkeypatch)
    assert [_all_pages(client, q) for q in QUERIES] == joined
    assert joined[3] == ["p0", "p1", "p2", "p4", "p5", "p6", "p7", "p8"]  # insertion order


def test_a_name_matching_twice_is_one_match(client, monkeypatch):
    """Two names of one Patient match the same prefix: the join keeps one row per resource."""
    for n in range(4):
        names = [{"family": "Santoso"}, {"family": "Santosa"}] if n % 2 == 0 else [{"family": "Wijaya"}]
        body = {"resourceType": "Patient", "id": f"s{n}", "name": names}
        assert client.put(f"/fhir/Patient/s{n}", json=body, headers=FHIR_JSON).status_code == 201
    joined = _all_pages(client, "family=Santos&_count=1")
    assert joined == ["s0", "s2"]
    monkeypatch.setattr(engine, "PILOT_CAP", 1)  # the walk in key order
    assert _all_pages(client, "family=Santos&_count=1") == joined
    _plain(monkeypatch)
    assert _all_pages(client, "family=Santos&_count=1") == joined


@pytest.mark.parametrize("cap", [engine.PILOT_CAP, 1])
def test_other_types_with_the_parameter_are_left_out(client, monkeypatch, cap):
    """``family`` rows of Practitioners share the index table with the Patients' rows."""
    monkeypatch.setattr(engine, "PILOT_CAP", cap)
    for n in range(3):
        body = {"resourceType": "Practitioner", "id": f"dr{n}", "name": [{"family": "Santoso"}]}
        assert client.put(f"/fhir/Practitioner/dr{n}", json=body, headers=FHIR_JSON).status_code == 201
        body = {"resourceType": "Patient", "id": f"pt{n}", "name": [{"family": "Santoso"}]}
        assert client.put(f"/fhir/Patient/pt{n}", json=body, headers=FHIR_JSON).status_code == 201
    assert _all_pages(client, "family=Santoso&_count=2") == ["pt0", "pt1", "pt2"]


def _visit(client, n: int) -> None:
    """A Patient and two Encounters of it, so the Patients' keys are not consecutive."""
    body = {"resourceType": "Patient", "id": f"v{n}", "gender": "male" if n % 3 else "female"}
    assert client.put(f"/fhir/Patient/v{n}", json=body, headers=FHIR_JSON).status_code == 201
    for i in range(2):
        enc = {"resourceType": "Encounter", "id": f"v{n}e{i}", "status": "finished", "class": {"code": "AMB"}}
        enc["subject"] = {"reference": f"Patient/v{n}"}
        assert client.put(f"/fhir/Encounter/v{n}e{i}", json=enc, headers=FHIR_JSON).status_code == 201


def test_the_walk_takes_only_the_types_current_keys(client, monkeypatch):
    """Many matches: the page's keys are found first among the type's current resources, then
    their rows are read; other types' rows between them and deleted resources are left out, on
    every page."""
    for n in range(12):
        _visit(client, n)
    for n in (1, 5):
        assert client.delete(f"/fhir/Patient/v{n}?_cascade=delete").status_code in (200, 204)
    expected = [f"v{n}" for n in range(12) if n % 3 and n not in (1, 5)]
    monkeypatch.setattr(engine, "PILOT_CAP", 1)  # the walk in key order
    assert _all_pages(client, "gender=male&_count=2") == expected
    assert _all_pages(client, "gender=male&_count=50") == expected
    _plain(monkeypatch)
    assert _all_pages(client, "gender=male&_count=2") == expected


def test_the_type_key_index_on_postgresql_only(client):
    """``ix_resources_res_type_pk`` (migration 0021): what the walk above reads on PostgreSQL; SQLite's
    plans do not use it, so it is not there."""
    db = client.app.state.fhir.db
    found = index_definition(db.engine, "ix_resources_res_type_pk")
    if db.dialect == "sqlite":
        assert found is None
    else:
        assert found is not None and found.endswith("(res_type, pk) WHERE (NOT deleted)")


def test_the_walk_can_use_the_type_key_index(client, monkeypatch):
    """PostgreSQL: the many-matches page statement is one the partial index serves (its type test and
    ``deleted = FALSE`` imply the index's predicate), and rows are read from ``resources`` only for
    the page. The planner is steered off sequential scans and hash joins (``SET LOCAL``), so this
    checks that the index *can* serve the statement, whatever this small table's costs say."""
    if client.app.state.fhir.db.dialect != "postgresql":
        pytest.skip("PostgreSQL plans")
    for n in range(12):
        _visit(client, n)
    monkeypatch.setattr(engine, "PILOT_CAP", 1)
    found, (plan,) = planned_search(client, [("gender", "male"), ("_count", "3")])
    assert found == ["v1", "v2", "v4"]
    nodes = plan_nodes(plan)
    walks = [n for n in nodes if n.get("Index Name") == "ix_resources_res_type_pk" and n.get("Actual Loops")]
    assert walks and all(n["Node Type"] == "Index Only Scan" for n in walks)
    rows = [n for n in nodes if n.get("Relation Name") == "resources" and n.get("Index Name") != "ix_resources_res_type_pk"]
    assert sum(n["Actual Rows"] * n["Actual Loops"] for n in rows) <= 4  # the page (3 and one to see a next page)


def test_a_parameters_share_of_a_value_is_estimated_from_both(client):
    """PostgreSQL (migration 0022): the planner estimates ``param = 'family' AND value`` in a prefix
    range from the pairs' own statistics. A family name is also a ``name`` value, so from the
    columns' statistics apart it took the share of the pair as the product of the two shares
    (about a third of the rows here); a dense family then looked sparse and the page sorted every
    match instead of walking (docs/search.md "Keeping the plans stable")."""
    db = client.app.state.fhir.db
    if db.dialect != "postgresql":
        pytest.skip("PostgreSQL statistics")
    entries = []
    for n in range(300):
        family = "Santoso" if n % 3 else f"Wijaya{n}"
        patient = {"resourceType": "Patient", "name": [{"family": family, "given": [f"Budi{n}"]}], "address": [{"city": f"Kota{n}"}]}
        entries.append({"resource": patient, "request": {"method": "POST", "url": "Patient"}})
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    assert client.post("/fhir", json=bundle, headers=FHIR_JSON).status_code == 200
    db.analyze()
    sql = "SELECT resource_pk FROM idx_string WHERE param = 'family' AND value >= 'santoso' AND value < 'santosp'"
    with db.engine.connect() as conn:
        (plan,) = conn.exec_driver_sql("EXPLAIN (ANALYZE, FORMAT JSON) " + sql).scalar()
    assert plan["Plan"]["Actual Rows"] == 200
    assert plan["Plan"]["Plan Rows"] >= 150


def test_a_code_neither_rare_nor_among_the_most_common_is_estimated_as_it_is(client):
    """PostgreSQL (migration 0029): the ``(param, code)`` statistics keep the 1,000 most common pairs.
    With the default 100, each of 300 codes of 40 rows among 20,000 unique identifiers was
    estimated at ~1 row unless it was among the 100 kept; at 1M Patients a ``phonetic`` pair key
    of 3,359 rows was estimated at 99, and the page probed every match instead of walking."""
    db = client.app.state.fhir.db
    if db.dialect != "postgresql":
        pytest.skip("PostgreSQL statistics")
    with db.engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO resources (res_type, res_id, version, updated_us, deleted) "
            "SELECT 'Patient', 'st' || g, 1, 1, FALSE FROM generate_series(1, 20000) g"
        )
        conn.exec_driver_sql(
            "INSERT INTO idx_token (resource_pk, param, code) SELECT pk, 'identifier', 'nik' || pk FROM resources WHERE res_id LIKE 'st%%'"
        )
        conn.exec_driver_sql(
            "INSERT INTO idx_token (resource_pk, param, code) "
            "SELECT pk, 'phonetic', 'k' || (pk %% 300) FROM resources WHERE res_id LIKE 'st%%' ORDER BY pk LIMIT 12000"
        )
    with db.engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE idx_token")
        estimates = []
        for k in range(0, 300, 10):
            sql = f"EXPLAIN (FORMAT JSON) SELECT resource_pk FROM idx_token WHERE param = 'phonetic' AND code = 'k{k}'"
            estimates.append(conn.exec_driver_sql(sql).scalar()[0]["Plan"]["Plan Rows"])
    assert min(estimates) >= 20  # 40 each


def test_several_criteria_never_read_every_key_of_a_large_one(client, monkeypatch):
    """PostgreSQL: AND-ed criteria were intersected (``INTERSECT``), which read every key of every
    criterion: at 100,000 Patients ``family=Santoso&gender=male`` read 54,705. Now each criterion's
    keys are counted up to the cap, and the page either walks the fewest keys (probing the others)
    or walks the type's keys in order (probing them), until it is full."""
    if client.app.state.fhir.db.dialect != "postgresql":
        pytest.skip("PostgreSQL's EXPLAIN ANALYZE (SQLite: the test below)")
    _forty_men(client)
    monkeypatch.setattr(engine, "PILOT_CAP", 5)
    # two Jarang among 40 men: the two are walked, gender probed for each
    found, read = keys_read(client, [("family", "Jarang"), ("gender", "male"), ("_count", "10")])
    assert found == ["m7", "m23"] and read <= 2 * (5 + 1) + 2 * 2
    # 40 men born in 1990: the type's keys walked until the page (3, and one more) is full
    found, read = keys_read(client, [("gender", "male"), ("birthdate", "1990"), ("_count", "3")])
    assert found == ["m0", "m1", "m2"] and read <= 2 * (5 + 1) + 2 * 4


def _forty_men(client) -> None:
    """40 Patients, men born in 1990; two of them (m7, m23) of the family Jarang."""
    for n in range(40):
        body = {"resourceType": "Patient", "id": f"m{n}", "gender": "male", "birthDate": "1990-01-01"}
        if n in (7, 23):
            body["name"] = [{"family": "Jarang"}]
        assert client.put(f"/fhir/Patient/m{n}", json=body, headers=FHIR_JSON).status_code == 201


def test_sqlite_walks_several_criteria_in_key_order(client, monkeypatch):
    """SQLite: several criteria had the plain statement, which read every key of each (``IN`` lists
    built whole) and sorted the matches: ``family&gender`` at 100,000 Patients p50 21 ms. Now, with
    many matches of each, the rows are walked in key order (rowid) and each criterion probed
    through its per-resource index, with no sort."""
    db = client.app.state.fhir.db
    if db.dialect != "sqlite":
        pytest.skip("SQLite's EXPLAIN QUERY PLAN")
    _forty_men(client)
    monkeypatch.setattr(engine, "PILOT_CAP", 5)
    query = "gender=male&birthdate=1990&_count=3"
    assert ids(db, "Patient", query) == ["m0", "m1", "m2"]
    steps = sqlite_plan(db, "Patient", query, "FROM resources")  # the page (the counts read only index tables)
    assert "SCAN r" in steps and not any("TEMP B-TREE" in step for step in steps), steps
    assert any("ix_idx_token_resource_pk" in step for step in steps) and any("ix_idx_date_resource_pk" in step for step in steps), steps
