"""Identifier conditions a transaction Bundle resolved before are answered without a search
while the change log shows their type unchanged (service/resolved_identifiers.py), and never
once it changed: in this process, in another one sharing the database, or after a purge."""

from __future__ import annotations

import orjson
import pytest

from fhir_server.config import Settings
from fhir_server.service import conditional
from fhir_server.state import build_state
from fhir_server.storage import changelog

H = {"Content-Type": "application/fhir+json"}
NIP = "https://fhir.kemkes.go.id/id/nakes-nip"


def _practitioner(res_id: str, *numbers: str) -> dict:
    return {"resourceType": "Practitioner", "id": res_id, "identifier": [{"system": NIP, "value": n} for n in numbers]}


def _visits(tag: str, *numbers: str) -> bytes:
    """A transaction of one Encounter per number, each naming its Practitioner by identifier."""
    entries = [
        {
            "resource": {
                "resourceType": "Encounter",
                "id": f"{tag}-{n}",
                "status": "finished",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                "participant": [{"individual": {"reference": f"Practitioner?identifier={NIP}|{n}"}}],
            },
            "request": {"method": "PUT", "url": f"Encounter/{tag}-{n}"},
        }
        for n in numbers
    ]
    return orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries})


def _who(client, encounter_id: str) -> str:
    return client.get(f"/fhir/Encounter/{encounter_id}").json()["participant"][0]["individual"]["reference"]


@pytest.fixture
def searches(monkeypatch) -> list[str]:
    """The types the conditional references searched."""
    seen: list[str] = []
    real = conditional.run_search

    def counting(conn, res_type, *args, **kwargs):
        seen.append(res_type)
        return real(conn, res_type, *args, **kwargs)

    monkeypatch.setattr(conditional, "run_search", counting)
    return seen


def _put(client, resource: dict) -> None:
    r = client.put(f"/fhir/{resource['resourceType']}/{resource['id']}", content=orjson.dumps(resource), headers=H)
    assert r.status_code in (200, 201), r.text


def test_a_second_bundle_naming_the_same_practitioners_searches_for_none_of_them(client, searches):
    _put(client, _practitioner("dr-a", "111"))
    _put(client, _practitioner("dr-b", "222"))
    assert client.post("/fhir", content=_visits("v1", "111", "222"), headers=H).status_code == 200
    assert searches.count("Practitioner") == 1  # both in one search
    assert client.post("/fhir", content=_visits("v2", "111", "222"), headers=H).status_code == 200
    assert searches.count("Practitioner") == 1  # Encounters were written since, not Practitioners
    assert [_who(client, f"v2-{n}") for n in ("111", "222")] == ["Practitioner/dr-a", "Practitioner/dr-b"]


def test_a_practitioner_written_since_makes_the_type_searched_again(client, searches):
    _put(client, _practitioner("dr-a", "111"))
    assert client.post("/fhir", content=_visits("v1", "111"), headers=H).status_code == 200
    _put(client, _practitioner("dr-twin", "111"))  # now two match: the reference cannot be resolved
    r = client.post("/fhir", content=_visits("v2", "111"), headers=H)
    assert r.status_code == 412, r.text
    assert "more than one" in r.text
    # searched again before the lock, and (its answer an error) once more under it, as always
    assert searches.count("Practitioner") == 3


def test_a_change_written_by_another_process_is_seen(client, searches):
    """Another server process (its own state and cache) moves the identifier to another
    Practitioner: the change log they share tells this one's answers are stale."""
    _put(client, _practitioner("dr-a", "111"))
    _put(client, _practitioner("dr-b", "999"))
    assert client.post("/fhir", content=_visits("v1", "111"), headers=H).status_code == 200
    other = build_state(Settings(database_url=str(client.app.state.fhir.db.engine.url.render_as_string(hide_password=False))))
    try:
        other.resources.update("Practitioner", "dr-a", _practitioner("dr-a", "999"))
        other.resources.update("Practitioner", "dr-b", _practitioner("dr-b", "111"))
    finally:
        other.db.dispose()
    assert client.post("/fhir", content=_visits("v2", "111"), headers=H).status_code == 200
    assert _who(client, "v2-111") == "Practitioner/dr-b"


def test_a_purge_of_the_log_drops_the_answers(client, searches):
    """Rows deleted from the change log cannot tell what changed: the type is searched again."""
    state = client.app.state.fhir
    _put(client, _practitioner("dr-a", "111"))
    assert client.post("/fhir", content=_visits("v1", "111"), headers=H).status_code == 200
    with state.db.write() as conn:
        position = changelog.last_seq(conn)
        assert not changelog.changed_between(conn, position, position, ("Practitioner",))
        changelog.purge(conn, 2**62)  # everything, as `fhir-server changes purge --days 0` with no consumer
        assert changelog.changed_between(conn, position, position, ("Practitioner",))
    assert client.post("/fhir", content=_visits("v2", "111"), headers=H).status_code == 200
    assert searches.count("Practitioner") == 2
    assert _who(client, "v2-111") == "Practitioner/dr-a"


def test_a_batch_entry_resolves_in_its_own_transaction_without_the_answers(client, searches):
    """Inside a write transaction the log cannot tell (its own changes are logged at its end):
    a batch entry's references are searched every time."""
    _put(client, _practitioner("dr-a", "111"))
    for tag in ("b1", "b2"):
        bundle = orjson.loads(_visits(tag, "111"))
        bundle["type"] = "batch"
        r = client.post("/fhir", content=orjson.dumps(bundle), headers=H)
        assert r.status_code == 200 and r.json()["entry"][0]["response"]["status"].startswith("201"), r.text
    assert searches.count("Practitioner") == 2
