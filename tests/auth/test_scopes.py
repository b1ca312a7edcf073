"""SMART v1 / v2 scope parsing, what a scope set allows, and narrowing at the token endpoint."""

from __future__ import annotations

import pytest

from fhir_server.auth.scopes import ACTIONS, InvalidScope, ScopeSet, narrow, parse_scope, validate_client_scopes

ALL = set(ACTIONS)


@pytest.mark.parametrize(
    "text, actions",
    [
        ("system/Patient.read", {"read", "search"}),
        ("system/Patient.write", {"create", "update", "delete"}),
        ("system/Patient.*", ALL),
        ("system/Patient.c", {"create"}),
        ("system/Patient.rs", {"read", "search"}),
        ("system/Patient.cud", {"create", "update", "delete"}),
        ("system/Patient.cruds", ALL),
        ("system/Patient.s", {"search"}),
    ],
)
def test_v1_and_v2_permissions_map_to_actions(text, actions):
    scope = parse_scope(text)
    assert scope is not None
    assert scope.actions == actions
    assert scope.version == ("v1" if text.split(".")[1] in {"read", "write", "*"} else "v2")


@pytest.mark.parametrize(
    "text",
    [
        "system/Patient.sr",
        "system/Patient.",
        "system/Patient.rr",
        "system/patient.read",
        "openid",
        "launch",
        "offline_access",
        "system/Patient",
        "admin/Patient.read",
        "system/Patient.readx",
    ],
)
def test_malformed_or_non_resource_scopes_do_not_parse(text):
    assert parse_scope(text) is None


@pytest.mark.parametrize(
    "scopes, res_type, allowed",
    [
        ("system/Patient.read", "Patient", {"read", "search"}),
        ("system/Patient.read", "Observation", set()),
        ("system/Patient.write", "Patient", {"create", "update", "delete"}),
        ("system/*.read", "Observation", {"read", "search"}),
        ("system/*.write", "Encounter", {"create", "update", "delete"}),
        ("system/*.*", "Coverage", ALL),
        ("system/*.rs", "Patient", {"read", "search"}),
        ("system/*.cruds", "Encounter", ALL),
        ("system/Patient.rs system/Encounter.cu", "Encounter", {"create", "update"}),
        ("system/Patient.r system/*.s", "Patient", {"read", "search"}),
        ("system/Patient.d", "Patient", {"delete"}),
    ],
)
def test_allows_matrix(scopes, res_type, allowed):
    s = ScopeSet.parse(scopes)
    assert {a for a in ACTIONS if s.allows(res_type, a)} == allowed


@pytest.mark.parametrize("scopes", ["system/*.*", "system/*.cruds", "system/*.read", "system/*.rs system/*.write"])
def test_wildcards_never_cover_audit_event(scopes):
    s = ScopeSet.parse(scopes)
    assert not any(s.allows("AuditEvent", a) for a in ACTIONS)
    assert s.allows("Patient", "read")


@pytest.mark.parametrize("scope", ["system/AuditEvent.read", "system/AuditEvent.rs", "system/AuditEvent.*", "system/AuditEvent.cruds"])
def test_explicit_audit_scope_grants_read_and_search_only(scope):
    s = ScopeSet.parse(scope)
    assert s.allows("AuditEvent", "read") and s.allows("AuditEvent", "search")
    assert not any(s.allows("AuditEvent", a) for a in ("create", "update", "delete"))
    assert not s.allows("Patient", "read")


def test_audit_event_write_scope_grants_nothing():
    s = ScopeSet.parse("system/AuditEvent.write system/AuditEvent.cud")
    assert not any(s.allows("AuditEvent", a) for a in ACTIONS)
    assert not s


@pytest.mark.parametrize("scope", ["patient/Patient.read", "user/*.cruds", "patient/*.rs", "system/Observation.rs?category=laboratory"])
def test_patient_user_and_granular_scopes_grant_nothing(scope):
    s = ScopeSet.parse(scope)
    assert parse_scope(scope) is not None
    assert not any(s.allows(t, a) for t in ("Patient", "Observation") for a in ACTIONS)


def test_non_resource_scopes_are_ignored():
    s = ScopeSet.parse("openid fhirUser launch/patient system/Patient.rs")
    assert [x.text for x in s.scopes] == ["system/Patient.rs"]
    assert str(s) == "system/Patient.rs"


def test_allows_all_types_only_with_a_wildcard():
    assert ScopeSet.parse("system/*.rs").allows_all_types("search")
    assert not ScopeSet.parse("system/Patient.rs").allows_all_types("search")
    assert ScopeSet.parse("system/Patient.rs system/Encounter.s").explicit_types("search") == {"Patient", "Encounter"}


def test_unknown_action_is_a_programming_error():
    with pytest.raises(ValueError):
        ScopeSet.parse("system/*.*").allows("Patient", "patch")


def test_client_scopes_must_be_system_resource_scopes():
    assert validate_client_scopes("system/*.rs system/AuditEvent.rs") == ["system/*.rs", "system/AuditEvent.rs"]
    assert validate_client_scopes(["system/Patient.read", "system/Patient.read"]) == ["system/Patient.read"]
    for bad in [
        "patient/*.read",
        "user/Patient.rs",
        "openid",
        "system/Patient.sr",
        "",
        "system/AuditEvent.write",
        "system/Observation.rs?code=x",
        "system/UnknownResource.read",
        "system/*.rs system/Patientx.rs",
    ]:
        with pytest.raises(ValueError):
            validate_client_scopes(bad)


class TestNarrowing:
    def test_no_requested_scope_grants_everything_allowed(self):
        assert narrow(None, ScopeSet.parse("system/*.rs system/AuditEvent.rs")) == ["system/*.rs", "system/AuditEvent.rs"]

    def test_requested_scope_within_allowed_is_granted_as_written(self):
        assert narrow("system/Patient.read", ScopeSet.parse("system/*.cruds")) == ["system/Patient.read"]
        assert narrow("system/*.read", ScopeSet.parse("system/*.rs")) == ["system/*.read"]

    def test_requested_scope_partly_allowed_is_reduced_to_the_intersection(self):
        assert narrow("system/Patient.cruds", ScopeSet.parse("system/*.rs")) == ["system/Patient.rs"]
        assert narrow("system/*.cruds", ScopeSet.parse("system/Patient.rs system/Encounter.cu")) == [
            "system/Patient.rs",
            "system/Encounter.cu",
        ]
        assert narrow("system/*.write", ScopeSet.parse("system/*.rs system/Coverage.c")) == ["system/Coverage.c"]

    def test_requested_scope_outside_allowed_is_dropped(self):
        assert narrow("system/Observation.rs system/Patient.rs", ScopeSet.parse("system/Patient.read")) == ["system/Patient.rs"]
        assert narrow("system/Observation.rs", ScopeSet.parse("system/Patient.read")) == []

    def test_audit_scope_is_not_granted_from_a_wildcard(self):
        assert narrow("system/AuditEvent.rs", ScopeSet.parse("system/*.cruds")) == []
        assert narrow("system/*.rs", ScopeSet.parse("system/AuditEvent.rs")) == []
        assert narrow("system/AuditEvent.read", ScopeSet.parse("system/AuditEvent.rs")) == ["system/AuditEvent.read"]

    def test_unsupported_requested_scopes_are_ignored(self):
        assert narrow("openid patient/*.read system/Patient.rs", ScopeSet.parse("system/*.rs")) == ["system/Patient.rs"]

    @pytest.mark.parametrize(
        "requested",
        [
            "system/UnknownResource.read",
            "system/Patient.rs system/UnknownResource.read",
            "system/*.rs user/Foo.cruds",
            "patient/Patientx.read openid",
        ],
    )
    def test_unknown_resource_type_refuses_the_whole_request(self, requested):
        with pytest.raises(InvalidScope) as info:
            narrow(requested, ScopeSet.parse("system/*.cruds"))
        assert "is not a FHIR R4 resource type" in str(info.value)

    def test_wildcard_and_known_types_are_not_unknown(self):
        assert narrow("system/*.rs system/Observation.read", ScopeSet.parse("system/*.rs")) == ["system/*.rs", "system/Observation.read"]

    def test_default_grant_leaves_out_unknown_types_registered_before_they_were_refused(self):
        assert narrow(None, ScopeSet.parse("system/Patient.rs system/UnknownResource.rs")) == ["system/Patient.rs"]
