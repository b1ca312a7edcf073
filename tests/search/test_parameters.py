from fhir_server.search.parameters import (
    capability_search_params,
    params_for,
    prune_expression,
    search_includes,
    search_revincludes,
)


def test_every_resource_type_gets_common_parameters():
    for t in ("Patient", "Encounter", "Coverage", "Observation", "Bundle"):
        codes = params_for(t)
        assert {"_id", "_lastUpdated", "_tag", "_profile", "_security", "_source"} <= set(codes)


def test_shared_union_is_pruned_to_the_own_branch():
    assert params_for("Encounter")["patient"].expression == "Encounter.subject.where(resolve() is Patient)"
    assert params_for("Patient")["identifier"].expression == "Patient.identifier"


def test_prune_keeps_parenthesised_branches():
    expr = "(A.value as Quantity) | (B.value as Quantity) | A.other"
    assert prune_expression(expr, "A") == "(A.value as Quantity) | A.other"


def test_capability_lists_only_supported_parameters_with_definitions():
    entries = {e["name"]: e for e in capability_search_params("Patient")}
    assert entries["identifier"]["definition"] == "http://hl7.org/fhir/SearchParameter/Patient-identifier"
    assert entries["family"]["type"] == "string"
    # _text/_content need full-text search: not claimed; phonetic is the MPI's name keys (test_phonetic.py)
    assert "_text" not in entries and "_content" not in entries
    assert entries["phonetic"]["definition"] == "http://hl7.org/fhir/SearchParameter/individual-phonetic"
    obs = {e["name"] for e in capability_search_params("Observation")}
    assert "code-value-quantity" in obs
    seq = {e["name"] for e in capability_search_params("MolecularSequence")}
    assert "chromosome-variant-coordinate" not in seq  # 3 components, %resource: not implemented


def test_custom_administrative_code_parameter_is_listed():
    entries = {e["name"]: e for e in capability_search_params("Patient")}
    assert entries["address-administrative-code"]["type"] == "token"


def test_include_and_revinclude_lists():
    assert "Encounter:subject" in search_includes("Encounter")
    assert "*" in search_includes("Encounter")
    assert "Encounter:patient" in search_revincludes("Patient")
    assert "Coverage:beneficiary" in search_revincludes("Patient")
