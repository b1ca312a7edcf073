"""R4's match-grade ``certainly-not``: a pair a reviewer marked "not the same person" is left out
of ``Patient/$match`` for the stored record, or graded certainly-not when asked
(``includeCertainlyNot``); on SQLite and PostgreSQL."""

from __future__ import annotations

import orjson

from tests.mpi.helpers import SITI, SITI_NIK, grade, patient
from tests.mpi.test_merge_http import JSON, create


def _match(client, resource, **flags):
    params = [{"name": "resource", "resource": resource}]
    params += [{"name": name, "valueBoolean": value} for name, value in flags.items()]
    r = client.post("/fhir/Patient/$match", content=orjson.dumps({"resourceType": "Parameters", "parameter": params}), headers=JSON)
    assert r.status_code == 200, r.text
    return [(e["resource"]["id"], grade(e), e["search"]["score"]) for e in r.json().get("entry", []) if e["search"]["mode"] == "match"]


def test_a_pair_marked_not_duplicate_is_certainly_not(client):
    siti = create(client, SITI)
    namesake = create(client, patient("SITI AMINAH", nik=SITI_NIK, birth="1990-06-05", gender="female"))
    stored = client.get(f"/fhir/Patient/{siti}").json()
    before = _match(client, stored)
    assert sorted((i, g) for i, g, _ in before) == sorted([(siti, "certain"), (namesake, "certain")])

    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "patient-a", "valueReference": {"reference": f"Patient/{siti}"}},
            {"name": "patient-b", "valueReference": {"reference": f"Patient/{namesake}"}},
        ],
    }
    assert client.post("/fhir/Patient/$not-duplicate", content=orjson.dumps(body), headers=JSON).status_code == 200

    # the stored record: the other one is left out, or graded certainly-not (score 0, last) when asked
    assert [i for i, _, _ in _match(client, stored)] == [siti]
    asked = _match(client, stored, includeCertainlyNot=True)
    assert asked[0][:2] == (siti, "certain")
    assert asked[1:] == [(namesake, "certainly-not", 0)]
    assert [i for i, _, _ in _match(client, stored, includeCertainlyNot=True, onlyCertainMatches=True)] == [siti]
    # from the other side too
    other = client.get(f"/fhir/Patient/{namesake}").json()
    assert (siti, "certainly-not", 0) in _match(client, other, includeCertainlyNot=True)
    # a Patient that is not a stored record is matched on its content alone: the verdict is about the two records
    unsaved = {k: v for k, v in stored.items() if k not in ("id", "meta")}
    assert {i for i, _, _ in _match(client, unsaved, includeCertainlyNot=True)} == {siti, namesake}


def test_include_certainly_not_must_be_a_boolean(client):
    body = {
        "resourceType": "Parameters",
        "parameter": [{"name": "resource", "resource": SITI}, {"name": "includeCertainlyNot", "valueString": "maybe"}],
    }
    r = client.post("/fhir/Patient/$match", content=orjson.dumps(body), headers=JSON)
    assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"
