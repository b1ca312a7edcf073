"""A change whose answer cannot be written in any format the client accepts is refused before it
runs (http.html#mime-type: 406). It was made, then answered 406: the client saw a failure, and a
retry stored it twice."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from tests.security.test_token_auth_http import auth, token_for

H = {"Content-Type": "application/fhir+json", "Accept": "text/html"}
PATIENT = orjson.dumps({"resourceType": "Patient", "name": [{"family": "Negosiasi"}]})


def _count(client, res_type: str = "Patient") -> int:
    return client.get(f"/fhir/{res_type}?_summary=count").json()["total"]


def _refused(r) -> None:
    assert r.status_code == 406, r.text
    assert r.json()["resourceType"] == "OperationOutcome" and "text/html" in r.json()["issue"][0]["diagnostics"]


def test_a_create_an_update_a_patch_and_a_transaction_are_not_made(client):
    _refused(client.post("/fhir/Patient", content=PATIENT, headers=H))
    _refused(client.put("/fhir/Patient/neg1", content=PATIENT.replace(b"{", b'{"id":"neg1",', 1), headers=H))
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": orjson.loads(PATIENT), "request": {"method": "POST", "url": "Patient"}}],
    }
    _refused(client.post("/fhir", content=orjson.dumps(bundle), headers=H))
    assert _count(client) == 0
    pid = client.post("/fhir/Patient", content=PATIENT, headers={"Content-Type": "application/fhir+json"}).json()["id"]
    patch = client.patch(
        f"/fhir/Patient/{pid}", content=b'{"active":true}', headers={"Content-Type": "application/merge-patch+json", "Accept": "text/html"}
    )
    _refused(patch)
    assert "active" not in client.get(f"/fhir/Patient/{pid}").json()
    assert client.get(f"/fhir/Patient/{pid}").json()["meta"]["versionId"] == "1"


def test_an_operation_that_writes_is_not_run(client):
    dukcapil = (Path(__file__).parents[1] / "mappings" / "fixtures" / "dukcapil_call_nik.json").read_bytes()
    _refused(
        client.post("/fhir/Patient/$import-dukcapil", content=dukcapil, headers={"Content-Type": "application/json", "Accept": "text/html"})
    )
    assert _count(client) == 0
    done = client.post("/fhir/Patient/$import-dukcapil", content=dukcapil, headers={"Content-Type": "application/json"})
    assert done.status_code in (200, 201), done.text
    assert _count(client) == 1


@pytest.mark.parametrize(("prefer", "status"), [("return=minimal", 201), (None, 406)])
def test_no_answer_body_no_negotiation(client, prefer, status):
    headers = {**H, **({"Prefer": prefer} if prefer else {})}
    r = client.post("/fhir/Patient", content=PATIENT, headers=headers)
    assert r.status_code == status, r.text
    assert _count(client) == (1 if status == 201 else 0)


def test_a_delete_answers_204_whatever_is_accepted_unless_an_outcome_is_asked_for(client):
    pid = client.post("/fhir/Patient", content=PATIENT, headers={"Content-Type": "application/fhir+json"}).json()["id"]
    _refused(client.delete(f"/fhir/Patient/{pid}", headers={"Accept": "text/html", "Prefer": "return=OperationOutcome"}))
    assert client.get(f"/fhir/Patient/{pid}").status_code == 200
    assert client.delete(f"/fhir/Patient/{pid}", headers={"Accept": "text/html"}).status_code == 204
    assert client.get(f"/fhir/Patient/{pid}").status_code == 410


def test_a_binary_written_natively_is_answered_natively(client):
    pdf = b"%PDF-1.4 negotiated"
    r = client.post("/fhir/Binary", content=pdf, headers={"Content-Type": "application/pdf", "Accept": "application/pdf"})
    assert r.status_code == 201, r.text
    assert r.content == pdf and r.headers["content-type"] == "application/pdf" and r.headers["location"]
    assert _count(client, "Binary") == 1


def test_token_mode_authorization_comes_first(secured):
    reader = token_for(secured, "system/Patient.read")
    r = secured.post("/fhir/Patient", content=PATIENT, headers={**auth(reader), "Accept": "text/html"})
    assert r.status_code == 403, r.text
    writer = token_for(secured, "system/Patient.read system/Patient.write")
    _refused(secured.post("/fhir/Patient", content=PATIENT, headers={**auth(writer), "Accept": "text/html"}))
    assert secured.get("/fhir/Patient?_summary=count", headers=auth(reader)).json()["total"] == 0


def test_a_binary_written_natively_asking_for_an_outcome_in_a_native_type_is_not_made(client):
    headers = {"Content-Type": "application/pdf", "Accept": "application/pdf", "Prefer": "return=OperationOutcome"}
    r = client.post("/fhir/Binary", content=b"%PDF-1.4", headers=headers)
    assert r.status_code == 406, r.text
    assert _count(client, "Binary") == 0
