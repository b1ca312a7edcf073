"""``phonetic`` (R4 individual-phonetic: Patient, Person, Practitioner, RelatedPerson) by the
master patient index's Indonesian name keys (search/phonetic.py).

A registration desk types a name as it hears it: ``Suharto`` for a record written ``Soeharto``
(the 1947 spelling), ``Muhammad Rizky`` for ``Moch. Rizki``. Before, ``phonetic`` was "not
supported (ignored)": a lenient search answered every Patient."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from fhir_server.storage import migrate
from fhir_server.subscriptions.rowmatch import compile_filter
from tests.conftest import BACKENDS, match_ids, migrated_database, put_resource, store_raw

H = {"Content-Type": "application/fhir+json"}


@pytest.fixture
def people(client):
    for pid, name in (
        ("p-soeharto", {"text": "Soeharto"}),
        ("p-rizki", {"given": ["Moch.", "Rizki"], "family": "Pratama"}),
        ("p-aminah", {"text": "Hj. Siti Aminah, S.Pd."}),
        ("p-yusuf", {"family": "Yoesoef", "given": ["Djoko"]}),
        ("p-dewi", {"family": "Lestari", "given": ["Dewi"]}),
    ):
        put_resource(client, {"resourceType": "Patient", "id": pid, "name": [name]})
    put_resource(client, {"resourceType": "Patient", "id": "p-nameless"})
    return client


@pytest.mark.parametrize(
    "heard, found",
    [
        ("Suharto", ["p-soeharto"]),
        ("Muhammad Rizky", ["p-rizki"]),
        ("rizky pratama", ["p-rizki"]),  # any order, any case
        ("Risky", ["p-rizki"]),
        ("Siti Aminnah", ["p-aminah"]),  # the title and degree were never part of the name
        ("Joko Yusuf", ["p-yusuf"]),  # Djoko Yoesoef in today's spelling
        ("Yusuf Budi", []),  # every token must match
        ("Rizki,Suharto", ["p-rizki", "p-soeharto"]),  # either value
    ],
)
def test_names_as_heard_find_names_as_written(people, heard, found):
    assert match_ids(people, f"/fhir/Patient?phonetic={heard}") == found


def test_missing_and_changes(people):
    assert match_ids(people, "/fhir/Patient?phonetic:missing=true") == ["p-nameless"]
    assert "p-nameless" not in match_ids(people, "/fhir/Patient?phonetic:missing=false")
    put_resource(people, {"resourceType": "Patient", "id": "p-soeharto", "name": [{"text": "Sukarno"}]})
    assert match_ids(people, "/fhir/Patient?phonetic=Suharto") == []
    assert match_ids(people, "/fhir/Patient?phonetic=Soekarno") == ["p-soeharto"]


def test_practitioners_too(client):
    put_resource(client, {"resourceType": "Practitioner", "id": "dr-tjahjadi", "name": [{"text": "dr. Tjahjadi Nugroho, Sp.PD"}]})
    assert match_ids(client, "/fhir/Practitioner?phonetic=Cahyadi") == ["dr-tjahjadi"]


def test_string_modifiers_are_not_phonetic(people):
    assert people.get("/fhir/Patient?phonetic:exact=Suharto", headers={"Prefer": "handling=strict"}).status_code == 400


def test_a_subscription_filter_leaves_it_to_the_search():
    """The in-memory matcher compares strings; the keys are the search's to judge."""
    assert compile_filter("Patient", [("phonetic", "Suharto")], "http://testserver/fhir") is None
    assert compile_filter("Patient", [("name", "Suharto")], "http://testserver/fhir") is not None


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_migration_indexes_the_names_already_stored(backend, tmp_path):
    with migrated_database(backend, tmp_path) as db:
        migrate.downgrade(db.engine, "0026_location_near")
        store_raw(db.engine, {"resourceType": "Patient", "id": "old", "name": [{"text": "Soeharto"}, {"given": ["Moch."]}]})
        migrate.upgrade(db.engine)
        with db.engine.connect() as conn:
            codes = conn.execute(sa.text("SELECT code FROM idx_token WHERE param = 'phonetic' ORDER BY code")).scalars().all()
        assert codes == ["mhmd", "shrt"]
        migrate.downgrade(db.engine, "0026_location_near")
        with db.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM idx_token")).scalar_one() == 0
