"""The BPJS client against a local stand-in that checks signatures and encrypts like BPJS."""

import json

import httpx
import pytest

from fhir_server.errors import FhirError
from mappings.bpjs_client import BpjsClient
from mappings.bpjs_peserta import bpjs_peserta_to_fhir
from mappings.vclaim_security import Credentials, encrypt, signature
from tests.mappings.helpers import fixture

CREDS = Credentials("1234", "s3cr3tKey", user_key="uk", pcare_username="u", pcare_password="p")


def stand_in(code="200", message="OK", payload=None, metadata_int=False):
    """A BPJS-shaped server: 401 on a bad signature, else the envelope with an encrypted response."""
    seen = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        h = request.headers
        if h.get("X-signature") != signature(h.get("X-cons-id", ""), CREDS.secret, h.get("X-timestamp", "")):
            return httpx.Response(401, json={"metaData": {"code": "401", "message": "Signature invalid"}})
        response = None
        if payload is not None:
            response = encrypt(json.dumps(payload), CREDS.cons_id, CREDS.secret, h["X-timestamp"])
        meta_code = int(code) if metadata_int else code
        return httpx.Response(200, json={"metaData": {"code": meta_code, "message": message}, "response": response})

    return httpx.MockTransport(handle), seen


def test_peserta_lookup_is_signed_and_decrypted():
    peserta = fixture("bpjs_peserta")["response"]
    transport, seen = stand_in(payload=peserta)
    with BpjsClient("https://bpjs.test/vclaim-rest/", CREDS, transport=transport) as client:
        assert client.peserta_by_card("0001234500001", "2024-03-04") == peserta
    request = seen[0]
    assert request.url.path == "/vclaim-rest/Peserta/nokartu/0001234500001/tglSEP/2024-03-04"
    assert request.headers["user_key"] == "uk"
    assert request.headers["Content-Type"] == "application/json"


def test_decrypted_response_feeds_the_mapping():
    transport, _ = stand_in(payload=fixture("bpjs_peserta")["response"])
    with BpjsClient("https://bpjs.test/", CREDS, transport=transport) as client:
        result = bpjs_peserta_to_fhir(client.peserta_by_nik("3204154506900003", "2024-03-04"))
    assert result.first("Coverage")["subscriberId"] == "0001234500001"


def test_sep_insert_posts_json_with_bpjs_content_type():
    transport, seen = stand_in(payload={"sep": {"noSep": "0000R0010324V000001"}})
    with BpjsClient("https://bpjs.test/", CREDS, transport=transport) as client:
        assert client.insert_sep(fixture("sep_insert_request")) == {"sep": {"noSep": "0000R0010324V000001"}}
    assert seen[0].method == "POST"
    assert seen[0].headers["Content-Type"] == "Application/x-www-form-urlencoded"
    assert json.loads(seen[0].content) == fixture("sep_insert_request")


def test_pcare_sends_x_authorization_and_accepts_int_codes():
    transport, seen = stand_in(code="201", message="CREATED", payload={"field": "noUrut", "message": "A1"}, metadata_int=True)
    with BpjsClient("https://bpjs.test/pcare-rest/", CREDS, pcare=True, transport=transport) as client:
        assert client.pcare_pendaftaran(fixture("pcare_pendaftaran")) == {"field": "noUrut", "message": "A1"}
    assert seen[0].headers["X-authorization"].startswith("Basic ")


def test_bpjs_error_becomes_fhir_error():
    transport, _ = stand_in(code="201", message="Peserta Tidak Ditemukan")
    with BpjsClient("https://bpjs.test/", CREDS, transport=transport) as client, pytest.raises(FhirError) as err:
        client.peserta_by_card("0009999999999", "2024-03-04")
    assert err.value.status == 404


def test_wrong_secret_is_rejected_by_the_stand_in():
    transport, _ = stand_in(payload={})
    bad = Credentials("1234", "wrong")
    with BpjsClient("https://bpjs.test/", bad, transport=transport) as client, pytest.raises(FhirError) as err:
        client.peserta_by_card("0001234500001", "2024-03-04")
    assert "Signature invalid" in err.value.issues[0].diagnostics


def test_non_json_answer_is_a_gateway_error():
    transport = httpx.MockTransport(lambda request: httpx.Response(503, text="Service Unavailable"))
    with BpjsClient("https://bpjs.test/", CREDS, transport=transport) as client, pytest.raises(FhirError) as err:
        client.peserta_by_card("0001234500001", "2024-03-04")
    assert err.value.status == 502
