"""Date searches bound the index scan by the widest value stored for the parameter (search/sql.py
``_span``, migration 0014): results are those of the spec's range rules whatever the precisions
stored, also right after a wider value arrives. SQLite and PostgreSQL (the ``client`` fixture)."""

from __future__ import annotations

from tests.conftest import index_definition

FHIR_JSON = {"Content-Type": "application/fhir+json"}


def _patient(pid: str, birth: str) -> dict:
    return {"resourceType": "Patient", "id": pid, "birthDate": birth}


def _ids(client, query: str) -> set[str]:
    body = client.get(f"/fhir/Patient?{query}&_count=100").json()
    return {e["resource"]["id"] for e in body.get("entry", [])}


def test_the_span_index_exists(client):
    definition = index_definition(client.app.state.fhir.db.engine, "ix_idx_date_param_span")
    assert definition is not None and "ix_idx_date_param_span" in definition


def test_ge_and_gt_find_values_of_every_precision(client):
    for pid, birth in [("day-in", "1980-05-10"), ("day-before", "1980-04-30"), ("day-after", "1980-05-29"), ("old", "1950-01-01")]:
        assert client.put(f"/fhir/Patient/{pid}", json=_patient(pid, birth), headers=FHIR_JSON).status_code == 201
    assert _ids(client, "birthdate=ge1980-05-01&birthdate=le1980-05-28") == {"day-in"}
    assert _ids(client, "birthdate=gt1980-05-28") == {"day-after"}
    # a wider value arrives after the day-precision ones: the bound widens with it at once
    assert client.put("/fhir/Patient/year", json=_patient("year", "1980"), headers=FHIR_JSON).status_code == 201
    assert _ids(client, "birthdate=ge1980-05-01&birthdate=le1980-05-28") == {"day-in", "year"}
    assert _ids(client, "birthdate=gt1980-05-28") == {"day-after", "year"}
    assert _ids(client, "birthdate=ge1981-01-01") == set()
    # and narrows again only in the sense that a deleted value no longer matches (never wrongly)
    assert client.delete("/fhir/Patient/year").status_code in (200, 204)
    assert _ids(client, "birthdate=ge1980-05-01&birthdate=le1980-05-28") == {"day-in"}


def test_a_datetime_parameter_with_minute_precision_values(client):
    for n, when in enumerate(["2024-03-01T08:00:00+07:00", "2024-03-01T23:59:00Z", "2024-02-29T10:00:00Z"]):
        obs = {
            "resourceType": "Observation",
            "id": f"o{n}",
            "status": "final",
            "code": {"text": "nadi"},
            "effectiveDateTime": when,
        }
        assert client.put(f"/fhir/Observation/o{n}", json=obs, headers=FHIR_JSON).status_code == 201
    body = client.get("/fhir/Observation?date=ge2024-03-01&_count=100").json()
    assert {e["resource"]["id"] for e in body.get("entry", [])} == {"o0", "o1"}
