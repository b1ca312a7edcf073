"""The index-first page (search/engine.py ``_page_from_index``, PostgreSQL) answers exactly what
the plain statement answers: same resources, same order, same pages, deleted ones left out,
several criteria intersected; beyond ``PILOT_CAP`` matches the plain statement runs. On SQLite the
plain statement always runs and the answers are the same (the ``client`` fixture runs both)."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from fhir_server.search import engine

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


@pytest.mark.parametrize("cap", [engine.PILOT_CAP, 2])  # index first, and the plain statement beyond the cap
def test_pages_are_the_same_either_way(client, patients, monkeypatch, cap):
    monkeypatch.setattr(engine, "PILOT_CAP", cap)
    ways: list[bool] = []  # True: the page came from the index side
    real = engine._page_from_index

    def spy(*args, **kwargs):
        found = real(*args, **kwargs)
        ways.append(found is not None)
        return found

    monkeypatch.setattr(engine, "_page_from_index", spy)
    in_may = _all_pages(client, "birthdate=ge1980-05-01&birthdate=le1980-05-31&_count=2")
    assert sorted(in_may) == ["p0", "p1", "p2", "p4", "p5", "p6"]  # p3 was deleted
    assert len(set(in_may)) == len(in_may)
    women = _all_pages(client, "birthdate=ge1980-05-01&birthdate=le1980-05-31&gender=female&_count=2")
    assert sorted(women) == ["p1", "p5"]
    assert _all_pages(client, "birthdate=ge2000-01-01&_count=2") == []
    # each way was taken where expected (the first page beyond the cap falls back); SQLite
    # always runs the plain statement
    if client.app.state.fhir.db.dialect == "sqlite":
        assert ways == []
    else:
        assert ways and (all(ways) if cap > 100 else not ways[0])


def test_both_ways_give_one_order(client, patients, monkeypatch):
    first = _all_pages(client, "birthdate=ge1980-01-01&_count=3")
    monkeypatch.setattr(engine, "PILOT_CAP", 1)
    assert _all_pages(client, "birthdate=ge1980-01-01&_count=3") == first
    assert sorted(first) == ["p0", "p1", "p2", "p4", "p5", "p6", "p7", "p8"]
