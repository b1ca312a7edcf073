"""``phonetic`` (R4 individual-phonetic: Patient, Person, Practitioner, RelatedPerson) by the
master patient index's Indonesian name keys (search/phonetic.py).

A registration desk types a name as it hears it: ``Suharto`` for a record written ``Soeharto``
(the 1947 spelling), ``Muhammad Rizky`` for ``Moch. Rizki``. Before, ``phonetic`` was "not
supported (ignored)": a lenient search answered every Patient."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from searchutil import keys_read

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
        ("Muhammad Rizki Pratama", ["p-rizki"]),  # three tokens: two pairs, the first paired again
        ("Pratama Muhammad Rizki", ["p-rizki"]),
        ("Muhammad Rizki Lestari", []),
        ("Dewi Yusuf Pratama Lestari", []),  # four tokens: two pairs, one of them in nobody's name
        ("Lestari Dewi", ["p-dewi"]),
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


def test_tokens_from_different_names_of_one_resource_match(client):
    # the birth name and the name taken at marriage: a search by the given name and the new family
    names = [{"use": "maiden", "given": ["Ratna"], "family": "Wulandari"}, {"use": "official", "family": "Hutapea"}]
    put_resource(client, {"resourceType": "Patient", "id": "p-ratna", "name": names})
    assert match_ids(client, "/fhir/Patient?phonetic=Ratna Hutapea") == ["p-ratna"]
    assert match_ids(client, "/fhir/Patient?phonetic=Hutapea Wulandari Ratna") == ["p-ratna"]


def test_a_value_of_two_tokens_reads_only_their_matches(client):
    """PostgreSQL: ``Budi Santoso`` is one look-up of the pair of keys, which reads its matches only.
    Before, the keys one by one were intersected: every Budi and every Santoso was read."""
    if client.app.state.fhir.db.dialect != "postgresql":
        pytest.skip("PostgreSQL plans (SQLite runs the plain statement)")
    for n in range(30):
        family = "Santoso" if n in (4, 17) else f"Wijaya{n}" if n % 2 else "Hartono"
        put_resource(client, {"resourceType": "Patient", "id": f"b{n}", "name": [{"given": ["Budi"], "family": family}]})
        put_resource(client, {"resourceType": "Patient", "id": f"s{n}", "name": [{"given": [f"Agus{n}"], "family": "Santoso"}]})
    found, read = keys_read(client, [("phonetic", "Budi Santoso"), ("_count", "10")])
    assert found == ["b4", "b17"] and read <= 4


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
        assert codes == ["mhmd", "mhmd shrt", "shrt"]  # each key, and each pair of them (0028)
        migrate.downgrade(db.engine, "0027_phonetic")
        with db.engine.connect() as conn:
            codes = conn.execute(sa.text("SELECT code FROM idx_token WHERE param = 'phonetic' ORDER BY code")).scalars().all()
        assert codes == ["mhmd", "shrt"]
        migrate.downgrade(db.engine, "0026_location_near")
        with db.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM idx_token")).scalar_one() == 0
