"""Token modifiers answered by the terminology (R4 search.html#token): ``:in``, ``:not-in``,
``:below``, ``:above``. Before, each was "not supported (ignored)": a lenient search answered as if
the criterion were absent, every resource of the type (``Condition?clinical-status:in=...``
listed every Condition), a strict one was 400.

``:in``/``:not-in`` take a value set (canonical URL, ``url|version``, or ``ValueSet/[id]`` of a
stored one): packaged ones come from the terminology engine, others from the stored ValueSets.
``:below``/``:above`` take ``system|code`` and follow the code system's hierarchy
(condition-clinical: ``inactive`` has ``remission`` and ``resolved`` below it)."""

from __future__ import annotations

import uuid

import orjson
import pytest

from tests.conftest import match_ids, put_resource

H = {"Content-Type": "application/fhir+json"}
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
GENDERS = "http://hl7.org/fhir/ValueSet/administrative-gender"
LOCAL_VS = "https://rs.example.id/fhir/ValueSet/status-selesai"


def _condition(cid, patient, status=None):
    c = {"resourceType": "Condition", "id": cid, "subject": {"reference": f"Patient/{patient}"}, "code": {"text": "ISPA"}}
    if status:
        c["clinicalStatus"] = {"coding": [{"system": CLINICAL, "code": status}]}
    return c


@pytest.fixture
def chart(client):
    put_resource(client, {"resourceType": "Patient", "id": "tm-p1", "gender": "female"})
    put_resource(client, {"resourceType": "Patient", "id": "tm-p2", "gender": "male"})
    put_resource(client, {"resourceType": "Patient", "id": "tm-p3"})  # no gender
    for cid, status in (("c-active", "active"), ("c-relapse", "relapse"), ("c-resolved", "resolved"), ("c-remission", "remission")):
        put_resource(client, _condition(cid, "tm-p1", status))
    put_resource(client, _condition("c-none", "tm-p2"))
    return client


def test_in_and_not_in_a_packaged_value_set(chart):
    assert match_ids(chart, f"/fhir/Patient?gender:in={GENDERS}") == ["tm-p1", "tm-p2"]
    assert match_ids(chart, f"/fhir/Patient?gender:in={GENDERS}|4.0.1") == ["tm-p1", "tm-p2"]
    # :not-in as :not: resources without a value in the set, those without any value included
    assert match_ids(chart, f"/fhir/Patient?gender:not-in={GENDERS}") == ["tm-p3"]


def test_in_a_stored_value_set_by_url_by_version_and_by_id(chart):
    # unique: the terminology engine is the process's, and tests share it
    tag = uuid.uuid4().hex[:8]
    local, vs_id = f"{LOCAL_VS}-{tag}", f"status-selesai-{tag}"
    vs = {
        "resourceType": "ValueSet",
        "id": vs_id,
        "url": local,
        "version": "2",
        "status": "active",
        "compose": {"include": [{"system": CLINICAL, "concept": [{"code": "resolved"}, {"code": "remission"}]}]},
    }
    put_resource(chart, vs)
    done = ["c-remission", "c-resolved"]
    assert match_ids(chart, f"/fhir/Condition?clinical-status:in={local}") == done
    assert match_ids(chart, f"/fhir/Condition?clinical-status:in={local}|2") == done
    assert match_ids(chart, f"/fhir/Condition?clinical-status:in=ValueSet/{vs_id}") == done
    assert match_ids(chart, f"/fhir/Condition?clinical-status:not-in={local}") == ["c-active", "c-none", "c-relapse"]
    # two value sets: either
    assert match_ids(chart, f"/fhir/Condition?clinical-status:in={local},{GENDERS}") == done
    assert chart.get(f"/fhir/Condition?clinical-status:in={local}|9").status_code == 400  # no such version
    # a change is seen at once (the database, not a copy the engine of one worker holds)
    vs["compose"]["include"][0]["concept"] = [{"code": "active"}]
    put_resource(chart, vs)
    assert match_ids(chart, f"/fhir/Condition?clinical-status:in={local}") == ["c-active"]


def test_below_and_above_follow_the_code_system_hierarchy(chart):
    assert match_ids(chart, f"/fhir/Condition?clinical-status:below={CLINICAL}|inactive") == ["c-remission", "c-resolved"]
    assert match_ids(chart, f"/fhir/Condition?clinical-status:below={CLINICAL}|active") == ["c-active", "c-relapse"]
    assert match_ids(chart, f"/fhir/Condition?clinical-status:below={CLINICAL}|resolved") == ["c-resolved"]
    # resolved is below inactive: a search above resolved finds what is coded inactive or resolved
    put_resource(chart, _condition("c-inactive", "tm-p2", "inactive"))
    assert match_ids(chart, f"/fhir/Condition?clinical-status:above={CLINICAL}|resolved") == ["c-inactive", "c-resolved"]
    # a code the system lacks stands for itself: nothing has it
    assert match_ids(chart, f"/fhir/Condition?clinical-status:below={CLINICAL}|nope") == []


def test_in_a_chain_and_a_reverse_chain(chart):
    assert match_ids(chart, f"/fhir/Condition?subject:Patient.gender:in={GENDERS}") == sorted(
        ["c-active", "c-relapse", "c-resolved", "c-remission", "c-none"]
    )
    assert match_ids(chart, f"/fhir/Patient?_has:Condition:subject:clinical-status:below={CLINICAL}|inactive") == ["tm-p1"]


@pytest.mark.parametrize(
    "query, why",
    [
        ("clinical-status:in=https://nowhere.example/ValueSet/x", "unknown ValueSet"),
        ("clinical-status:in=ValueSet/missing", "unknown ValueSet"),
        ("clinical-status:below=inactive", "system|code"),
        ("clinical-status:below=https://nowhere.example/cs|a", "Unknown CodeSystem"),
        ("code:below=https://fhir-server.id/CodeSystem/bpjs-poli|INT", "no content here"),
    ],
    ids=["unknown-value-set", "unknown-stored-id", "no-system", "unknown-code-system", "code-system-without-content"],
)
def test_what_cannot_be_answered_is_400_lenient_or_strict(chart, query, why):
    for headers in ({}, {"Prefer": "handling=strict"}):
        r = chart.get(f"/fhir/Condition?{query}", headers=headers)
        assert r.status_code == 400, r.text
        issue = r.json()["issue"][0]
        assert why in issue["diagnostics"] and issue["expression"] == [query.partition("=")[0]]


def test_too_many_codes_is_too_costly(chart):
    # the 7,285 Kemendagri districts: more than a search lists (never read as "no codes")
    for modifier in ("in", "not-in"):
        r = chart.get(f"/fhir/Condition?code:{modifier}=https://fhir-server.id/ValueSet/kemendagri-wilayah-district")
        assert r.status_code == 400, r.text
        assert r.json()["issue"][0]["code"] == "too-costly" and "7285 codes" in r.json()["issue"][0]["diagnostics"]


def test_a_batch_entry_and_a_post_search_take_them_too(chart):
    assert sorted(
        e["resource"]["id"]
        for e in chart.post("/fhir/Condition/_search", data={"clinical-status:below": f"{CLINICAL}|inactive"}).json()["entry"]
    ) == ["c-remission", "c-resolved"]
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"request": {"method": "GET", "url": f"Patient?gender:in={GENDERS}"}}],
    }
    inner = chart.post("/fhir", content=orjson.dumps(batch), headers=H).json()["entry"][0]["resource"]
    assert sorted(e["resource"]["id"] for e in inner["entry"]) == ["tm-p1", "tm-p2"]


def test_token_mode_a_stored_value_set_needs_value_set_search(secured):
    """A stored value set selects resources by another resource's content, as a chain does."""
    from tests.security.test_token_auth_http import auth, token_for

    admin = token_for(secured, "system/*.*")
    tag = uuid.uuid4().hex[:8]
    local, vs_id = f"{LOCAL_VS}-{tag}", f"vs-{tag}"
    vs = {"resourceType": "ValueSet", "id": vs_id, "url": local, "status": "active", "compose": {"include": [{"system": CLINICAL}]}}
    for resource in (vs, _condition("tc-1", "tm-p1", "resolved")):
        r = secured.put(f"/fhir/{resource['resourceType']}/{resource['id']}", content=orjson.dumps(resource), headers={**H, **auth(admin)})
        assert r.status_code == 201, r.text
    conditions_only = auth(token_for(secured, "system/Condition.read"))
    refused = secured.get(f"/fhir/Condition?clinical-status:in={local}", headers=conditions_only)
    assert refused.status_code == 403 and "ValueSet" in refused.json()["issue"][0]["diagnostics"]
    assert secured.get(f"/fhir/Condition?clinical-status:not-in=ValueSet/{vs_id}", headers=conditions_only).status_code == 403
    # the packaged terminology and the hierarchy are the server's own
    packaged = secured.get("/fhir/Condition?clinical-status:in=http://hl7.org/fhir/ValueSet/condition-clinical", headers=conditions_only)
    assert packaged.status_code == 200 and [e["resource"]["id"] for e in packaged.json()["entry"]] == ["tc-1"]
    assert secured.get(f"/fhir/Condition?clinical-status:below={CLINICAL}|inactive", headers=conditions_only).status_code == 200
    both = auth(token_for(secured, "system/Condition.read system/ValueSet.read"))
    allowed = secured.get(f"/fhir/Condition?clinical-status:in={local}", headers=both)
    assert allowed.status_code == 200 and [e["resource"]["id"] for e in allowed.json()["entry"]] == ["tc-1"]
