"""The SATUSEHAT administrativeCode address extension."""

from __future__ import annotations

from terminology.administrative_code import check_administrative_code, check_resource_administrative_codes
from terminology.urls import SATUSEHAT_ADMINISTRATIVE_CODE

PATH = "Patient.address[0].extension[0]"


def ext(**parts: str) -> dict:
    return {"url": SATUSEHAT_ADMINISTRATIVE_CODE, "extension": [{"url": k, "valueCode": v} for k, v in parts.items()]}


GOOD = dict(province="32", city="3204", district="320415", village="3204152003", rt="002", rw="005")


def test_valid_codes_have_no_issues():
    assert check_administrative_code(ext(**GOOD), path=PATH) == []


def test_partial_codes_that_nest_are_fine():
    assert check_administrative_code(ext(province="32", city="3204"), path=PATH) == []


def test_dotted_code_is_an_error_with_a_hint():
    [issue] = check_administrative_code(ext(province="32", city="32.04"), path=PATH)
    assert (issue.severity, issue.code) == ("error", "value")
    assert "'3204'" in issue.diagnostics
    assert issue.expression == f"{PATH}.extension[1].value.ofType(code)"


def test_wrong_length_is_an_error():
    [issue] = check_administrative_code(ext(village="320415200"), path=PATH)
    assert issue.severity == "error" and "10 digits" in issue.diagnostics


def test_village_outside_its_district_is_an_error():
    issues = check_administrative_code(ext(**{**GOOD, "village": "3273011001"}), path=PATH)
    assert [(i.severity, i.code, i.expression) for i in issues] == [("error", "business-rule", f"{PATH}.extension[3].value.ofType(code)")]


def test_city_outside_its_province_is_an_error():
    issues = check_administrative_code(ext(province="31", city="3204"), path=PATH)
    assert [i.code for i in issues] == ["business-rule"]


def test_nesting_skips_missing_levels():
    issues = check_administrative_code(ext(province="33", village="3204152003"), path=PATH)
    assert [i.code for i in issues] == ["business-rule"]


def test_unknown_wellformed_code_warns_by_default():
    [issue] = check_administrative_code(ext(province="32", city="3299"), path=PATH)
    assert (issue.severity, issue.code) == ("warning", "code-invalid")
    assert issue.expression == f"{PATH}.extension[1].value.ofType(code)"


def test_unknown_wellformed_code_is_an_error_when_strict():
    [issue] = check_administrative_code(ext(province="32", city="3299"), strict=True, path=PATH)
    assert (issue.severity, issue.code) == ("error", "code-invalid")


def test_value_that_is_not_a_valuecode_is_an_error():
    bad = {"url": SATUSEHAT_ADMINISTRATIVE_CODE, "extension": [{"url": "province", "valueString": "32"}]}
    [issue] = check_administrative_code(bad, path=PATH)
    assert issue.code == "structure" and "valueString" in issue.diagnostics


def test_unknown_and_repeated_parts_are_errors():
    bad = {
        "url": SATUSEHAT_ADMINISTRATIVE_CODE,
        "extension": [{"url": "province", "valueCode": "32"}, {"url": "province", "valueCode": "32"}, {"url": "kota", "valueCode": "3204"}],
    }
    assert [i.diagnostics.split("'")[1] for i in check_administrative_code(bad, path=PATH)] == ["province", "kota"]


def test_missing_subextensions_is_an_error():
    [issue] = check_administrative_code({"url": SATUSEHAT_ADMINISTRATIVE_CODE}, path=PATH)
    assert issue.code == "structure" and issue.expression == PATH


def test_non_numeric_rt_warns():
    [issue] = check_administrative_code(ext(province="32", rt="A1"), path=PATH)
    assert issue.severity == "warning"


def test_resource_walk_finds_every_extension_with_fhirpath_expressions():
    patient = {
        "resourceType": "Patient",
        "extension": [
            {
                "url": "https://fhir.kemkes.go.id/r4/StructureDefinition/birthPlace",
                "valueAddress": {"extension": [ext(province="31", city="3204")]},
            }
        ],
        "address": [{"city": "X"}, {"extension": [{"url": "other"}, ext(province="3x")]}],
    }
    issues = check_resource_administrative_codes(patient)
    assert [i.expression for i in issues] == [
        "Patient.extension[0].value.ofType(Address).extension[0].extension[1].value.ofType(code)",
        "Patient.address[1].extension[1].extension[0].value.ofType(code)",
    ]


def test_the_quick_search_finds_every_extension_the_walk_checks():
    """``_has_code`` decides whether the walk runs: on random JSON with bad and good codes
    planted anywhere (in extension arrays, nested in them, or as plain values), the result is
    the walk's own."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from terminology.administrative_code import _walk

    leaves = st.one_of(st.none(), st.integers(), st.text(max_size=3), st.just(ext(province="3x")), st.just(ext(**GOOD)))
    tree = st.recursive(
        leaves,
        lambda kids: st.one_of(
            st.lists(kids, max_size=3),
            st.dictionaries(st.sampled_from(["extension", "address", "valueAddress", "url", "x"]), kids, max_size=3),
        ),
        max_leaves=12,
    )

    @settings(max_examples=400, deadline=None)
    @given(tree)
    def check(node):
        resource = {"resourceType": "Patient", "address": [node]}
        walked: list = []
        _walk(resource, resource, (), False, walked)
        assert check_resource_administrative_codes(resource) == walked

    check()


BIRTH_PLACE = "http://hl7.org/fhir/StructureDefinition/patient-birthPlace"
PLACED = {
    "address": {"resourceType": "Patient", "address": [{"city": "Bandung", "extension": [ext(province="3x")]}]},
    "contact address": {"resourceType": "Patient", "contact": [{"name": {"text": "Ibu"}, "address": {"extension": [ext(province="3x")]}}]},
    "birthPlace valueAddress": {
        "resourceType": "Patient",
        "extension": [{"url": BIRTH_PLACE, "valueAddress": {"extension": [ext(province="3x")]}}],
    },
    "a primitive's _city": {"resourceType": "Patient", "address": [{"city": "Bandung", "_city": {"extension": [ext(province="3x")]}}]},
    "nested in another extension": {
        "resourceType": "Patient",
        "extension": [{"url": "https://example.org/wrapper", "extension": [ext(province="3x")]}],
    },
    "a contained resource": {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"code": "AMB"},
        "contained": [{"resourceType": "Location", "id": "l1", "address": {"extension": [ext(province="3x")]}}],
        "location": [{"location": {"reference": "#l1"}}],
    },
    "an Organization": {"resourceType": "Organization", "address": [{"extension": [ext(province="3x")]}]},
    "as a modifierExtension (not one)": {"resourceType": "Patient", "modifierExtension": [ext(province="3x")]},
    "none": {"resourceType": "Patient", "extension": [{"url": "https://example.org/x", "valueString": "y"}]},
}


def test_the_structure_check_notes_every_extension_the_quick_search_finds():
    """``ResourceService.verdicts`` gives the check the urls the structure walk noted instead of
    letting ``_has_code`` walk the resource again: wherever the extension sits in a structurally
    valid resource, both must agree, and the verdict is the walk's own."""
    from fhir_server.model.structure import check_structure
    from terminology.administrative_code import _has_code

    for where, resource in PLACED.items():
        urls: set[str] = set()
        assert check_structure(resource, extension_urls=urls) == [], where  # valid: the noted urls are all of them
        assert (SATUSEHAT_ADMINISTRATIVE_CODE in urls) == _has_code(resource), where
        assert check_resource_administrative_codes(resource, extension_urls=urls) == check_resource_administrative_codes(resource), where
    assert sum(_has_code(r) for r in PLACED.values()) == len(PLACED) - 2  # the extension is found in all but the last two


def test_a_service_verdict_finds_the_extension_wherever_it_sits(tmp_path):
    from fhir_server.config import Settings
    from fhir_server.state import build_state

    state = build_state(Settings(database_url=f"sqlite:///{tmp_path}/db.sqlite"))
    try:
        verdicts = state.resources.verdicts(list(PLACED.values()))
    finally:
        state.db.dispose()
    for where, verdict in zip(PLACED, verdicts, strict=True):
        issues = verdict if isinstance(verdict, list) else verdict.issues  # '3x' is malformed: an error
        flagged = any("administrativeCode province '3x'" in (i.diagnostics or "") for i in issues)
        assert flagged == (where not in ("as a modifierExtension (not one)", "none")), (where, verdict)
