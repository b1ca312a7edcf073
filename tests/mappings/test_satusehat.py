"""mappings.satusehat (pure): UTC times, rule numbers, what SATUSEHAT would refuse, the payload
with references rewritten to SATUSEHAT ids and the derived statusHistory."""

from __future__ import annotations

from mappings import satusehat as ss

ENC = {
    "resourceType": "Encounter",
    "id": "e1",
    "meta": {"versionId": "3"},
    "identifier": [{"system": "urn:local", "value": "RJ-1"}],
    "status": "finished",
    "class": {"code": "AMB"},
    "subject": {"reference": "Patient/p1", "display": "Budi"},
    "participant": [{"individual": {"reference": "Practitioner/d1"}}],
    "period": {"start": "2026-11-20T09:00:00+07:00", "end": "2026-11-20T09:30:00+07:00"},
    "location": [{"location": {"reference": "Location/l1"}}],
    "diagnosis": [{"condition": {"reference": "Condition/c1"}}, {"condition": {"reference": "Condition/c2"}}],
}


def test_times_go_out_in_utc_and_dates_stay():
    assert ss.to_utc("2026-11-20T17:35:00+07:00") == "2026-11-20T10:35:00+00:00"
    assert ss.to_utc("2026-11-20T10:35:00.250Z") == "2026-11-20T10:35:00.250+00:00"
    assert ss.to_utc("2026-11-20") == "2026-11-20"


def test_rule_numbers_are_read_from_the_outcome():
    outcome = {
        "issue": [{"details": {"text": "Wrong organization ID (RuleNumber: 10117)"}}, {"details": {"text": "dup (RuleNumber: 20002)"}}]
    }
    assert ss.rule_numbers(outcome) == ["10117", "20002"]
    assert ss.rule_numbers("Gateway Timeout") == []


def test_hold_reasons_follow_satusehat_rules():
    assert ss.hold_reason(ENC) is None
    assert "10121" in (ss.hold_reason({**ENC, "period": {"start": "2026-11-20T09:00:00+07:00"}}) or "")
    assert "10173" in (ss.hold_reason({**ENC, "period": {"start": "2026-11-20T09:00:00+07:00", "end": "2026-11-20T08:00:00+07:00"}}) or "")
    assert "10120" in (ss.hold_reason({**ENC, "location": []}) or "")
    assert "10119" in (ss.hold_reason({**ENC, "participant": []}) or "")
    cond = {"resourceType": "Condition", "subject": {"reference": "Patient/p1"}, "encounter": {"reference": "Encounter/e1"}}
    diag = {
        **cond,
        "category": [{"coding": [{"code": "encounter-diagnosis"}]}],
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "1"}]},
    }
    assert "ICD-10" in (ss.hold_reason(diag) or "")
    assert "10126" in (ss.hold_reason({**diag, "encounter": None}) or "")
    obs = {**cond, "resourceType": "Observation", "code": {"coding": [{"code": "8867-4"}]}, "valueQuantity": {"value": 1, "unit": "x"}}
    assert "10012" in (ss.hold_reason(obs) or "")
    assert "position" in (ss.hold_reason({"resourceType": "Location", "name": "Poli"}) or "")


def test_payload_rewrites_references_and_leaves_out_unsynced_diagnoses():
    ids = {
        ("Patient", "p1"): "P02478375538",
        ("Practitioner", "d1"): "10009880728",
        ("Location", "l1"): "uuid-l",
        ("Condition", "c1"): "uuid-c1",
    }
    body = ss.payload(ENC, "100000001", ids, None)
    assert "id" not in body and "meta" not in body
    assert body["identifier"] == [{"system": "http://sys-ids.kemkes.go.id/encounter/100000001", "use": "official", "value": "e1"}]
    assert body["subject"] == {"reference": "Patient/P02478375538", "display": "Budi"}
    assert body["participant"][0]["individual"] == {"reference": "Practitioner/10009880728"}
    assert body["participant"][0]["type"][0]["coding"][0]["code"] == "ATND"
    assert body["location"] == [{"location": {"reference": "Location/uuid-l"}}]
    assert body["diagnosis"] == [{"condition": {"reference": "Condition/uuid-c1"}}]  # c2 is not in SATUSEHAT yet
    assert body["serviceProvider"] == {"reference": "Organization/100000001"}
    assert body["period"] == {"start": "2026-11-20T02:00:00+00:00", "end": "2026-11-20T02:30:00+00:00"}
    assert body["statusHistory"] == [
        {"status": "arrived", "period": {"start": "2026-11-20T02:00:00+00:00", "end": "2026-11-20T02:00:00+00:00"}},
        {"status": "in-progress", "period": {"start": "2026-11-20T02:00:00+00:00", "end": "2026-11-20T02:30:00+00:00"}},
        {"status": "finished", "period": {"start": "2026-11-20T02:30:00+00:00", "end": "2026-11-20T02:30:00+00:00"}},
    ]
    assert ss.payload(ENC, "100000001", ids, "uuid-e")["id"] == "uuid-e"
    needs = ss.needs(ENC)
    assert needs.required == (("Patient", "p1"), ("Practitioner", "d1"), ("Location", "l1"))
    assert needs.optional == (("Condition", "c1"), ("Condition", "c2"))


def test_an_organization_sub_unit_is_sent_part_of_the_facility_or_of_its_parent_unit():
    unit = {"resourceType": "Organization", "id": "poli", "name": "Poli Umum", "partOf": {"reference": "Organization/pkm"}}
    assert ss.is_sub_unit(unit) and not ss.is_sub_unit({**unit, "partOf": None})
    assert ss.needs(unit).required == (("Organization", "pkm"),)
    assert "name" in (ss.hold_reason({**unit, "name": None}) or "")
    assert ss.hold_reason(unit) is None
    body = ss.payload({**unit, "endpoint": [{"reference": "Endpoint/x"}]}, "100025753", {("Organization", "pkm"): "100025753"}, None)
    assert body["partOf"] == {"reference": "Organization/100025753"}
    assert body["identifier"] == [{"system": "http://sys-ids.kemkes.go.id/organization/100025753", "use": "official", "value": "poli"}]
    assert "endpoint" not in body and "id" not in body
    child = {**unit, "partOf": {"reference": "Organization/poli0"}}
    nested = ss.payload(child, "100025753", {("Organization", "poli0"): "uuid-0"}, "uuid-1")
    assert nested["partOf"] == {"reference": "Organization/uuid-0"} and nested["id"] == "uuid-1"
