"""Binary in its native form (binary.html#rest: "when binary data is written to the server
(create/update - POST or PUT), the data is accepted as is and treated as the binary data of a
Binary"; a read whose Accept is not a FHIR type returns "the content in its native form").

A SIMRS uploading a scanned referral letter posted the PDF with ``Content-Type: application/pdf``
and got 415; asking for it back with ``Accept: application/pdf`` got 406.
"""

from __future__ import annotations

import base64

import pytest

from tests.security.test_token_auth_http import auth, token_for

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))
PDF = b"%PDF-1.4\n% surat rujukan\n"


def _post_native(client, body: bytes = PNG, content_type: str = "image/png", **headers):
    return client.post("/fhir/Binary", content=body, headers={"Content-Type": content_type, **headers})


def test_a_native_body_is_stored_as_a_binary_and_read_back_as_sent(client):
    r = _post_native(client, **{"X-Security-Context": "Patient/p1"})
    assert r.status_code == 201, r.text
    resource = r.json()
    assert resource["contentType"] == "image/png" and base64.b64decode(resource["data"]) == PNG
    assert resource["securityContext"] == {"reference": "Patient/p1"}
    bid = resource["id"]
    native = client.get(f"/fhir/Binary/{bid}", headers={"Accept": "image/png"})
    assert native.status_code == 200 and native.content == PNG
    assert native.headers["content-type"] == "image/png"
    assert native.headers["etag"] == 'W/"1"' and native.headers["x-security-context"] == "Patient/p1"
    assert "default-src 'none'" in native.headers["content-security-policy"]  # stored HTML cannot run
    as_fhir = client.get(f"/fhir/Binary/{bid}").json()
    assert as_fhir == resource


def test_a_file_name_in_the_url_is_no_condition(client):
    """Medplum's client uploads as ``POST Binary?_filename=rujukan.pdf`` (createBinary,
    createAttachment): 400 "unknown search parameter '_filename'" before; each upload is a create."""
    first = client.post("/fhir/Binary?_filename=rujukan.pdf", content=PDF, headers={"Content-Type": "application/pdf"})
    second = client.post("/fhir/Binary?_filename=rujukan.pdf", content=PDF, headers={"Content-Type": "application/pdf"})
    assert (first.status_code, second.status_code) == (201, 201), first.text
    assert first.json()["id"] != second.json()["id"]
    assert client.get(f"/fhir/Binary/{first.json()['id']}", headers={"Accept": "application/pdf"}).content == PDF
    # beside a real condition it is left out of it
    pdf = base64.b64encode(PDF).decode()
    body = {"resourceType": "Binary", "contentType": "application/pdf", "data": pdf}
    url = f"/fhir/Binary?_id={first.json()['id']}&_filename=x.pdf"
    again = client.post(url, json=body)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]


def test_put_creates_then_versions_and_vread_answers_each_version_natively(client):
    first = client.put("/fhir/Binary/rujukan1", content=PDF, headers={"Content-Type": "application/pdf"})
    assert first.status_code == 201, first.text
    second = client.put("/fhir/Binary/rujukan1", content=PDF + b"v2", headers={"Content-Type": "application/pdf"})
    assert second.status_code == 200 and second.json()["meta"]["versionId"] == "2"
    pdf = {"Accept": "application/pdf"}
    assert client.get("/fhir/Binary/rujukan1", headers=pdf).content == PDF + b"v2"
    assert client.get("/fhir/Binary/rujukan1/_history/1", headers=pdf).content == PDF
    head = client.head("/fhir/Binary/rujukan1", headers=pdf)
    assert head.status_code == 200 and head.headers["content-length"] == str(len(PDF) + 2) and head.content == b""
    assert [e["resource"]["meta"]["versionId"] for e in client.get("/fhir/Binary/rujukan1/_history").json()["entry"]] == ["2", "1"]


@pytest.mark.parametrize(
    ("accept", "query"),
    [(None, ""), ("*/*", ""), ("application/fhir+json", ""), ("image/png, application/fhir+json", ""), ("image/png", "?_format=json")],
)
def test_a_fhir_format_asked_for_or_nothing_asked_gets_the_resource(client, accept, query):
    bid = _post_native(client).json()["id"]
    r = client.get(f"/fhir/Binary/{bid}{query}", headers={"Accept": accept} if accept else {})
    assert r.status_code == 200 and r.json()["resourceType"] == "Binary", r.text


def test_a_fhir_body_is_still_a_fhir_body_and_other_types_take_no_native_form(client):
    fhir = client.post(
        "/fhir/Binary",
        content=b'{"resourceType":"Binary","contentType":"text/plain","data":"aGFp"}',
        headers={"Content-Type": "application/fhir+json"},
    )
    assert fhir.status_code == 201 and fhir.json()["data"] == "aGFp"
    patient = client.post("/fhir/Patient", content=PDF, headers={"Content-Type": "application/pdf"})
    assert patient.status_code == 415 and patient.json()["resourceType"] == "OperationOutcome"
    pid = client.post("/fhir/Patient", content=b'{"resourceType":"Patient"}', headers={"Content-Type": "application/fhir+json"}).json()[
        "id"
    ]
    assert client.get(f"/fhir/Patient/{pid}", headers={"Accept": "application/pdf"}).status_code == 406


def test_a_native_write_is_audited_and_logged_as_any_write(client):
    bid = _post_native(client, PDF, "application/pdf").json()["id"]
    events = client.get(f"/fhir/AuditEvent?entity=Binary/{bid}&action=C").json()
    assert len(events["entry"]) == 1, events
    history = client.get("/fhir/Binary/_history").json()
    assert [e["request"]["method"] for e in history["entry"]] == ["POST"]


def test_token_mode_native_binaries_need_the_binary_scopes(secured):
    reader = token_for(secured, "system/Binary.read")
    refused = secured.post("/fhir/Binary", content=PDF, headers={**auth(reader), "Content-Type": "application/pdf"})
    assert refused.status_code == 403, refused.text
    writer = token_for(secured, "system/Binary.read system/Binary.write")
    created = secured.post("/fhir/Binary", content=PDF, headers={**auth(writer), "Content-Type": "application/pdf"})
    assert created.status_code == 201, created.text
    bid = created.json()["id"]
    other = token_for(secured, "system/Patient.read")
    assert secured.get(f"/fhir/Binary/{bid}", headers={**auth(other), "Accept": "application/pdf"}).status_code == 403
    native = secured.get(f"/fhir/Binary/{bid}", headers={**auth(reader), "Accept": "application/pdf"})
    assert native.status_code == 200 and native.content == PDF
    assert secured.get("/fhir/Binary?_summary=count", headers=auth(reader)).json()["total"] == 1


def test_the_capability_statement_says_so(client):
    binary = next(r for r in client.get("/fhir/metadata").json()["rest"][0]["resource"] if r["type"] == "Binary")
    assert "Native content" in binary["documentation"]


def test_a_content_type_with_runs_of_blanks_is_kept_as_a_code(client):
    r = _post_native(client, b"halo", "text/plain;   charset=utf-8")
    assert r.status_code == 201, r.text
    assert r.json()["contentType"] == "text/plain; charset=utf-8"
    bid = r.json()["id"]
    assert client.get(f"/fhir/Binary/{bid}", headers={"Accept": "text/plain"}).text == "halo"
