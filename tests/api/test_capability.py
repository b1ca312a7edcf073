"""The CapabilityStatement tells the exact truth about the routes."""

from __future__ import annotations

from fhir_server import resource_types


def test_metadata_is_an_r4_capability_statement(client):
    r = client.get("/fhir/metadata")
    assert r.status_code == 200
    cs = r.json()
    assert cs["resourceType"] == "CapabilityStatement"
    assert cs["fhirVersion"] == "4.0.1"
    assert cs["kind"] == "instance"
    assert "application/fhir+json" in cs["format"] and "application/fhir+xml" in cs["format"]
    assert cs["implementation"]["url"] == "http://testserver/fhir"


def test_every_r4_type_is_listed_with_the_interactions_that_work(client):
    rest = client.get("/fhir/metadata").json()["rest"][0]
    types = {r["type"] for r in rest["resource"]}
    assert types == set(resource_types.RESOURCE_TYPES)
    assert "Patient" in types and "MedicinalProduct" in types and "SubscriptionTopic" not in types
    patient = next(r for r in rest["resource"] if r["type"] == "Patient")
    codes = {i["code"] for i in patient["interaction"]}
    assert {"read", "vread", "update", "patch", "delete", "create", "history-instance", "history-type", "search-type"} <= codes
    assert patient["conditionalCreate"] is True and patient["conditionalUpdate"] is True
    assert patient["conditionalDelete"] == "single"
    assert {i["code"] for i in rest["interaction"]} == {"transaction", "batch", "history-system", "search-system"}
    assert patient["versioning"] == "versioned-update"
    assert patient["readHistory"] is True and patient["updateCreate"] is True


def test_advertised_interactions_answer_on_every_type(client):
    """A sample of types: each advertised interaction reaches a real handler (never 404 route/405)."""
    for res_type in ("Patient", "Encounter", "Coverage", "MedicinalProduct", "Basic"):
        assert client.get(f"/fhir/{res_type}/_history").status_code == 200
        assert client.get(f"/fhir/{res_type}/x").status_code == 404
        assert client.get(f"/fhir/{res_type}/x").json()["issue"][0]["code"] == "not-found"


def test_openapi_declares_fhir_media_types(client):
    spec = client.get("/openapi.json").json()
    op = spec["paths"]["/fhir/{res_type}"]["post"]
    assert "application/fhir+json" in op["requestBody"]["content"]
    assert "application/fhir+json" in op["responses"]["201"]["content"]
