"""AuditRecord -> row -> FHIR R4 AuditEvent, valid for the server's validator."""

from __future__ import annotations

import base64

import pytest

from fhir_server.audit.events import (
    ACTIONS,
    CLIENT_SYSTEM,
    AuditRecord,
    outcome_code,
    to_fhir,
    to_row,
)
from fhir_server.model.validate import validate_resource
from fhir_server.storage.audit_tables import QUERY_MAX, USER_AGENT_MAX

US = 1_795_000_000_123_456  # 2026-11-18T...


def _errors(resource):
    return [i for i in validate_resource(resource) if i.severity in ("error", "fatal")]


@pytest.mark.parametrize("interaction", sorted(ACTIONS))
@pytest.mark.parametrize("status", [200, 201, 304, 404, 422, 500, 0])
def test_every_interaction_and_outcome_is_a_valid_audit_event(interaction, status):
    event = AuditRecord(
        interaction,
        status,
        res_type="Patient",
        res_id="p1",
        query="name=budi&_count=5",
        operation="$everything" if interaction == "operation" else None,
        client_id="simrs-1",
        organization_id="org-9",
        address="10.0.0.7",
        user_agent="SIMRS/2.0",
        request_id="req-1",
        recorded_us=US,
    )
    resource = to_fhir(to_row(event))
    assert _errors(resource) == []
    assert resource["action"] == ACTIONS[interaction]
    assert resource["outcome"] == outcome_code(status)
    assert resource["subtype"][0] == {"system": "http://hl7.org/fhir/restful-interaction", "code": interaction}


def test_minimal_events_are_valid():
    for event in (
        AuditRecord("transaction", 200),
        AuditRecord("history-system", 200, client_id="anonymous"),
        AuditRecord("search-system", 400, query="_type=Patient"),
        AuditRecord("search-type", 200, res_type="Observation", query="code=1234-5"),
        AuditRecord("create", 201, res_type="Patient"),
    ):
        assert _errors(to_fhir(to_row(event))) == []


def test_content_of_a_read():
    row = to_row(
        AuditRecord(
            "read",
            200,
            res_type="Patient",
            res_id="p1",
            client_id="simrs-1",
            organization_id="org-9",
            address="10.0.0.7",
            user_agent="SIMRS/2.0",
            request_id="req-1",
            recorded_us=US,
        )
    )
    ev = to_fhir(row)
    assert ev["id"] == row["event_id"] and len(ev["id"]) == 36
    assert ev["type"]["code"] == "rest"
    assert ev["recorded"].endswith("+00:00") and ev["recorded"] == ev["meta"]["lastUpdated"]
    assert ev["outcome"] == "0" and ev["outcomeDesc"] == "HTTP 200"
    client = ev["agent"][0]
    assert client["who"]["identifier"] == {"system": CLIENT_SYSTEM, "value": "simrs-1"}
    assert client["requestor"] is True
    assert client["network"] == {"address": "10.0.0.7", "type": "2"}
    assert ev["agent"][1]["who"] == {"reference": "Organization/org-9"}
    assert ev["source"]["observer"]["display"]
    what = ev["entity"][0]
    assert what["what"] == {"reference": "Patient/p1"}
    assert what["type"]["code"] == "Patient"
    assert "query" not in what
    request = ev["entity"][1]
    assert request["what"]["identifier"]["value"] == "req-1"
    assert request["detail"] == [{"type": "User-Agent", "valueString": "SIMRS/2.0"}]


def test_operation_name_is_stored_with_its_dollar():
    assert to_row(AuditRecord("operation", 200, operation="validate"))["operation"] == "$validate"
    assert to_row(AuditRecord("operation", 200, operation="$validate"))["operation"] == "$validate"
    ev = to_fhir(to_row(AuditRecord("operation", 200, operation="everything")))
    assert ev["subtype"][1] == {"system": "https://fhir-server.id/CodeSystem/operation", "code": "$everything"}


def test_query_is_base64_of_the_query_string():
    ev = to_fhir(to_row(AuditRecord("search-type", 200, res_type="Patient", query="name=Dewi Sartika&gender=female")))
    entity = ev["entity"][0]
    assert base64.b64decode(entity["query"]).decode() == "name=Dewi Sartika&gender=female"
    assert entity["role"]["code"] == "24"
    assert "what" not in entity


def test_outcome_mapping():
    assert [outcome_code(s) for s in (200, 201, 304, 400, 401, 403, 404, 499, 500, 503, 0, 999)] == [
        "0",
        "0",
        "0",
        "4",
        "4",
        "4",
        "4",
        "4",
        "8",
        "8",
        "12",
        "12",
    ]


def test_long_values_are_cut_and_unknown_interactions_refused():
    row = to_row(AuditRecord("search-type", 200, res_type="Patient", query="x" * 100_000, user_agent="u" * 5000, res_id="i" * 500))
    assert len(row["query"]) == QUERY_MAX and len(row["user_agent"]) == USER_AGENT_MAX and len(row["res_id"]) == 64
    with pytest.raises(ValueError):
        to_row(AuditRecord("hack", 200))


def test_event_ids_are_time_ordered_uuid7():
    import uuid

    from fhir_server.audit.events import new_event_id

    ids = [new_event_id(US + i * 1000) for i in range(200)]
    assert len(set(ids)) == 200
    assert all(uuid.UUID(i).version == 7 and uuid.UUID(i).variant == uuid.RFC_4122 for i in ids)
    assert [i[:13] for i in ids] == sorted(i[:13] for i in ids)
    assert int(uuid.UUID(ids[0]).hex[:12], 16) == US // 1000
