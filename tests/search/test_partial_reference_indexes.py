"""The reference rows' canonical-URL and ``:identifier`` indexes hold only the rows that have a
URL or an identifier (alembic 0023): nearly every reference row has neither, and each one of them
was an index entry ``(param, NULL)`` written and never read. Searches by URL and by identifier
find what they found before, and still reach their rows through those indexes."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from fhir_server.storage import migrate
from fhir_server.storage.db import create_engine
from tests.conftest import BACKENDS, index_definition
from tests.search.searchutil import idset, sqlite_plan

OTHER = "https://other.example/fhir/Patient/remote-1"
NIK = "https://fhir.kemkes.go.id/id/nik"
PARTIAL = {"ix_idx_reference_param_url": "url IS NOT NULL", "ix_idx_reference_param_identifier": "id_value IS NOT NULL"}


@pytest.fixture
def observations(store) -> None:
    store.put({"resourceType": "Patient", "id": "local"})
    for n in range(30):  # plain local references: no URL, no identifier
        store.put(_observation(f"plain{n}", {"reference": "Patient/local"}))
    store.put(_observation("remote", {"reference": OTHER}))
    store.put(_observation("by-nik", {"identifier": {"system": NIK, "value": "3204150101900001"}}))
    store.put(_observation("by-nik-other", {"identifier": {"system": NIK, "value": "3204150101900002"}}))
    store.put(_observation("system-only", {"identifier": {"system": NIK}, "display": "NIK unknown"}))


def _observation(res_id: str, subject: dict) -> dict:
    return {"resourceType": "Observation", "id": res_id, "status": "final", "code": {"text": "x"}, "subject": subject}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (f"subject={OTHER}", {"remote"}),
        (f"subject:identifier={NIK}|3204150101900001", {"by-nik"}),
        ("subject:identifier=3204150101900002", {"by-nik-other"}),
        # no code: a scan of the parameter's rows, not through the index; an identifier without a value has no row
        (f"subject:identifier={NIK}|", {"by-nik", "by-nik-other"}),
        ("subject=Patient/local", {f"plain{n}" for n in range(30)}),
    ],
)
def test_searches_by_url_and_identifier_find_their_rows(store, observations, query, expected):
    assert idset(store, "Observation", query) == expected


@pytest.mark.parametrize(
    ("query", "index"),
    [
        (f"subject={OTHER}", "ix_idx_reference_param_url"),
        (f"subject:identifier={NIK}|3204150101900001", "ix_idx_reference_param_identifier"),
    ],
)
def test_sqlite_reaches_them_through_the_partial_indexes(store, observations, query, index):
    if store.engine.dialect.name != "sqlite":
        pytest.skip("the query plan asserted is SQLite's; PostgreSQL's choice depends on its statistics")
    plan = " | ".join(sqlite_plan(store, "Observation", query, "idx_reference"))
    assert index in plan, plan


@pytest.mark.parametrize("fresh_database_url", BACKENDS, indirect=True)
def test_the_migrated_indexes_are_partial_and_go_back(fresh_database_url):
    engine = create_engine(fresh_database_url)
    try:
        migrate.upgrade(engine)
        assert _definitions(engine) == PARTIAL
        migrate.downgrade(engine, "0022_index_statistics")
        assert _definitions(engine) == dict.fromkeys(PARTIAL, "")  # as before: every row
        migrate.upgrade(engine)
        assert _definitions(engine) == PARTIAL
    finally:
        engine.dispose()


def test_the_models_declare_them_as_the_migration_makes_them(engine):
    """The search tests' databases are made from the models (``metadata.create_all``)."""
    assert _definitions(engine) == PARTIAL


def _definitions(engine: sa.Engine) -> dict[str, str | None]:
    """Each of the two indexes' WHERE condition ('' when it has none, None when it is missing)."""
    return {name: _where(index_definition(engine, name)) for name in PARTIAL}


def _where(sql: str | None) -> str | None:
    """``url IS NOT NULL`` from either engine's definition (PostgreSQL adds parentheses)."""
    if sql is None:
        return None
    _, sep, condition = sql.partition(" WHERE ")
    return condition.strip().strip("()") if sep else ""
