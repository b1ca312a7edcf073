"""_sort, _count, paging (also under concurrent inserts), _total, _summary, _elements."""

from __future__ import annotations

import orjson
import pytest
from searchutil import search

from fhir_server.search.engine import run_search


def walk(store, res_type, params, *, count, between=None):
    """Follow next links to the end; ``between(page_no)`` runs between page fetches."""
    seen, page = [], 0
    params = list(params)
    while True:
        with store.engine.connect() as conn:
            res = run_search(conn, res_type, params, strict=True, default_count=count, max_count=100)
        seen.extend(i for _, i, _ in res.matches)
        if res.next_params is None:
            return seen
        page += 1
        if between:
            between(page)
        params = res.next_params


@pytest.fixture
def many(store):
    families = ["Kurniawan", "Anwar", "Hidayat", "Anwar", "Basri", None, "Cahya", "Basri"]
    for n, fam in enumerate(families):
        p = {"resourceType": "Patient", "id": f"p{n}", "birthDate": f"19{70 + n}-01-01"}
        if fam:
            p["name"] = [{"family": fam}]
        store.put(p)
    return store


def test_default_order_is_insertion_order(many):
    assert [i for _, i, _ in search(many, "Patient", "").matches] == [f"p{n}" for n in range(8)]


def test_sort_by_string_ties_broken_by_pk_and_missing_last(many):
    got = [i for _, i, _ in search(many, "Patient", "_sort=family").matches]
    assert got == ["p1", "p3", "p4", "p7", "p6", "p2", "p0", "p5"]


def test_sort_descending_and_several_keys(many):
    got = [i for _, i, _ in search(many, "Patient", "_sort=-family,-birthdate").matches]
    assert got == ["p0", "p2", "p6", "p7", "p4", "p3", "p1", "p5"]


def test_sort_by_id_and_last_updated(many):
    assert [i for _, i, _ in search(many, "Patient", "_sort=-_id").matches][:2] == ["p7", "p6"]
    assert [i for _, i, _ in search(many, "Patient", "_sort=-_lastUpdated").matches][:2] == ["p7", "p6"]


@pytest.mark.parametrize("sort", ["", "_sort=family", "_sort=-family,birthdate", "_sort=-_lastUpdated"])
def test_paging_walks_every_match_once(many, sort):
    params = [tuple(sort.split("=", 1))] if sort else []
    full = [i for _, i, _ in search(many, "Patient", sort).matches]
    assert walk(many, "Patient", params, count=3) == full


def test_paging_under_concurrent_inserts(many):
    original = {f"p{n}" for n in range(8)}

    def insert(page):
        if page > 3:
            return
        for k, fam in enumerate(("Anwar", "Basri", "Zulkifli")):  # before, inside and after the cursor
            many.put({"resourceType": "Patient", "id": f"new{page}-{k}", "name": [{"family": fam}]})

    seen = walk(many, "Patient", [("_sort", "family")], count=2, between=insert)
    assert len(seen) == len(set(seen))
    assert original <= set(seen)


def test_previous_link_goes_back(many):
    with many.engine.connect() as conn:
        p1 = run_search(conn, "Patient", [("_sort", "family")], strict=True, default_count=3, max_count=10)
        assert p1.prev_params is None
        p2 = run_search(conn, "Patient", p1.next_params, strict=True, default_count=3, max_count=10)
        back = run_search(conn, "Patient", p2.prev_params, strict=True, default_count=3, max_count=10)
    assert [i for _, i, _ in back.matches] == [i for _, i, _ in p1.matches]


def test_self_link_of_a_later_page_carries_its_cursor(many):
    with many.engine.connect() as conn:
        p1 = run_search(conn, "Patient", [("_sort", "family")], strict=True, default_count=3, max_count=10)
        p2 = run_search(conn, "Patient", p1.next_params, strict=True, default_count=3, max_count=10)
    assert p1.self_params == [("_sort", "family")]
    assert p2.self_params == p1.next_params
    assert ("_cursor", p1.next_params[-1][1]) not in p2.next_params


def test_count_maximum_is_enforced(many):
    with many.engine.connect() as conn:
        res = run_search(conn, "Patient", [("_count", "50")], strict=False, default_count=2, max_count=5)
    assert len(res.matches) == 5 and res.issues


def test_total_none_accurate_estimate(many):
    assert search(many, "Patient", "_count=2").total is None
    assert search(many, "Patient", "_count=2&_total=accurate").total == 8
    assert search(many, "Patient", "_count=2&_total=estimate").total == 8
    assert search(many, "Patient", "_count=20").total == 8  # one page: known for free


def test_summary_count(many):
    res = search(many, "Patient", "_summary=count&family=anwar")
    assert res.total == 2 and res.matches == []


def test_count_zero(many):
    res = search(many, "Patient", "_count=0")
    assert res.total == 8 and res.matches == []


def test_bodies_are_the_stored_bytes(store):
    body = {"resourceType": "Patient", "id": "x", "birthDate": "1990-01-01", "gender": "male"}
    store.put(body)
    ((_, _, raw),) = search(store, "Patient", "").matches
    assert raw == orjson.dumps(body)


def test_summary_true_keeps_summary_elements_and_marks_subsetted(store):
    store.put(
        {
            "resourceType": "Patient",
            "id": "x",
            "text": {"status": "generated", "div": "<div/>"},
            "gender": "male",
            "contact": [{"name": {"family": "Y"}}],
            "deceasedBoolean": False,
        }
    )
    ((_, _, raw),) = search(store, "Patient", "_summary=true").matches
    doc = orjson.loads(raw)
    assert set(doc) == {"resourceType", "id", "gender", "deceasedBoolean", "meta"}
    assert doc["meta"]["tag"][0]["code"] == "SUBSETTED"


def test_summary_text_and_data(store):
    store.put(
        {
            "resourceType": "Encounter",
            "id": "e",
            "status": "finished",
            "class": {"code": "AMB"},
            "text": {"status": "generated", "div": "<div/>"},
            "priority": {"text": "x"},
        }
    )
    ((_, _, raw),) = search(store, "Encounter", "_summary=text").matches
    assert set(orjson.loads(raw)) == {"resourceType", "id", "meta", "text", "status", "class"}
    ((_, _, raw),) = search(store, "Encounter", "_summary=data").matches
    assert "text" not in orjson.loads(raw) and "priority" in orjson.loads(raw)


def test_elements(store):
    store.put(
        {"resourceType": "Patient", "id": "x", "gender": "male", "birthDate": "1990", "_birthDate": {"id": "b"}, "name": [{"family": "Z"}]}
    )
    ((_, _, raw),) = search(store, "Patient", "_elements=birthDate").matches
    doc = orjson.loads(raw)
    assert set(doc) == {"resourceType", "id", "meta", "birthDate", "_birthDate"}


@pytest.mark.parametrize(
    "token",
    [
        {"k": ["Anwar"], "pk": "1 OR 1=1", "d": "n"},  # pk must be an integer
        {"k": [5], "pk": 3, "d": "n"},  # a number where the family sort key is a string
        {"k": ["a", "b"], "pk": 3, "d": "n"},  # more keys than the _sort
        {"k": ["Anwar"], "pk": True, "d": "p"},
    ],
)
def test_forged_page_token_is_a_400(many, token):
    from fhir_server import paging
    from fhir_server.errors import FhirError
    from fhir_server.search.parse import CURSOR

    raw = paging.encode(token["k"], token["pk"], token["d"])
    with many.engine.connect() as conn, pytest.raises(FhirError) as err:
        run_search(conn, "Patient", [("_sort", "family"), (CURSOR, raw)], strict=True, default_count=3, max_count=10)
    assert err.value.status == 400


def test_page_token_with_a_date_sort_key_walks_on(many):
    with many.engine.connect() as conn:
        p1 = run_search(conn, "Patient", [("_sort", "-_lastUpdated")], strict=True, default_count=3, max_count=10)
        p2 = run_search(conn, "Patient", p1.next_params, strict=True, default_count=3, max_count=10)
    assert not {i for _, i, _ in p1.matches} & {i for _, i, _ in p2.matches} and len(p2.matches) == 3


def test_summary_true_keeps_the_summary_children_of_backbone_elements(store):
    """search.html#summary: the elements marked isSummary, at every level of the resource's own
    backbone elements (``Observation.component.interpretation`` is not one); data type values are
    kept whole. Only top-level elements were filtered: a backbone element was kept whole. The same
    code subsets reads (tests/api/test_read_subsetting.py)."""
    code = {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]}
    component = {"code": code, "valueQuantity": {"value": 120}, "interpretation": [{"text": "high"}]}
    store.put(
        {"resourceType": "Observation", "id": "o", "status": "final", "code": code, "component": [component], "note": [{"text": "n"}]}
    )
    ((_, _, raw),) = search(store, "Observation", "_summary=true").matches
    doc = orjson.loads(raw)
    assert set(doc) == {"resourceType", "id", "meta", "status", "code", "component"}
    assert doc["component"] == [{"code": code, "valueQuantity": {"value": 120}}]


def test_elements_leave_included_resources_whole_and_summary_subsets_them(store):
    """R4 search.html#elements: "The list of elements does not apply to included resources";
    ``_summary`` applies to every resource of the Bundle."""
    store.put({"resourceType": "Patient", "id": "p", "gender": "male", "contact": [{"name": {"family": "Y"}}]})
    store.put(
        {"resourceType": "Encounter", "id": "e", "status": "finished", "class": {"code": "AMB"}, "subject": {"reference": "Patient/p"}}
    )
    res = search(store, "Encounter", "_include=Encounter:subject&_elements=status")
    ((_, _, match),) = res.matches
    ((_, _, included),) = res.includes
    assert set(orjson.loads(match)) == {"resourceType", "id", "meta", "status", "class"}
    assert "contact" in orjson.loads(included) and "tag" not in orjson.loads(included).get("meta", {})
    ((_, _, included),) = search(store, "Encounter", "_include=Encounter:subject&_summary=true").includes
    assert "contact" not in orjson.loads(included)
