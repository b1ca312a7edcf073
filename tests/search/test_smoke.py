from searchsamples import COVERAGE, ENCOUNTER, PATIENT
from searchutil import idset, search


def test_basic_searches(store):
    store.put(PATIENT)
    store.put(ENCOUNTER)
    store.put(COVERAGE)
    assert idset(store, "Patient", "identifier=https://fhir.kemkes.go.id/id/nik|3171234567890123") == {"p1"}
    assert idset(store, "Patient", "family=nurh") == {"p1"}
    assert idset(store, "Patient", "birthdate=1985-03") == {"p1"}
    assert idset(store, "Encounter", "patient=Patient/p1") == {"e1"}
    assert idset(store, "Encounter", "subject:Patient.identifier=https://fhir.kemkes.go.id/id/nik|3171234567890123") == {"e1"}
    assert idset(store, "Patient", "_has:Encounter:patient:status=finished") == {"p1"}
    r = search(store, "Encounter", "_id=e1&_include=Encounter:subject")
    assert [i for _, i, _ in r.includes] == ["p1"]
