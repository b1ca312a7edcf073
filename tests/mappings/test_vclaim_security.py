"""VClaim signing and decryption on fixed vectors (made with node's crypto and lz-string 1.5)."""

import json

import pytest

from fhir_server.errors import FhirError
from mappings.vclaim_security import Credentials, decrypt, encrypt, headers, open_envelope, signature

CONS_ID, SECRET, TS = "1234", "s3cr3tKey", "1700000000"
# node: crypto.createHmac('sha256', SECRET).update(CONS_ID + '&' + TS).digest('base64')
SIGNATURE = "QpGYKjESq0qOh1PhrJUaiiFXli7x7P5p3DouEjsl5lI="
PLAIN = '{"peserta":{"noKartu":"0001234500001","nik":"3204154506900003","nama":"SITI RAHAYU","sex":"P","tglLahir":"1990-06-05"}}'
# node: key = sha256(CONS_ID + SECRET + TS), iv = key[0:16],
# aes-256-cbc(LZString.compressToEncodedURIComponent(PLAIN)) as base64
CIPHERTEXT = (
    "3cFVL0qR7GrdSu9ZKtUjrrsP3j2zvynEYpLwtLeHw0LLNPhPfkdMj9/yJkgfHCsK6ux9eIbbG3Z3Ksr5ZAEeJButlM/BWT1RAo+1cQcG"
    "PyfA2f1Rzt72jm5l11gLIf6WrSWF47jRtSAa1AQNZNlcKxr4r1S96MJM5YSS3H/JQHopSGd34Eiq2O5W9hcFpP/P178qWmF+iE1g4aq/"
    "vLOhCQ=="
)


def test_signature_matches_the_reference_vector():
    assert signature(CONS_ID, SECRET, TS) == SIGNATURE


def test_headers_carry_cons_id_timestamp_signature_and_user_key():
    h = headers(Credentials(CONS_ID, SECRET, user_key="uk"), TS)
    assert h == {"X-cons-id": CONS_ID, "X-timestamp": TS, "X-signature": SIGNATURE, "user_key": "uk"}


def test_pcare_headers_add_basic_x_authorization():
    h = headers(Credentials(CONS_ID, SECRET, pcare_username="u", pcare_password="p"), TS, pcare=True)
    assert h["X-authorization"] == "Basic dTpwOjA5NQ=="  # base64("u:p:095")


def test_decrypt_reference_vector():
    assert decrypt(CIPHERTEXT, CONS_ID, SECRET, TS) == PLAIN


def test_decrypt_accepts_php_escaped_slashes():
    assert decrypt(CIPHERTEXT.replace("/", "\\/"), CONS_ID, SECRET, TS) == PLAIN


def test_encrypt_is_the_inverse_and_matches_the_vector():
    assert encrypt(PLAIN, CONS_ID, SECRET, TS) == CIPHERTEXT


def test_wrong_timestamp_cannot_decrypt():
    with pytest.raises(FhirError) as err:
        decrypt(CIPHERTEXT, CONS_ID, SECRET, "1700000001")
    assert err.value.status == 502


def test_open_envelope_decrypts_the_response():
    body = {"metaData": {"code": "200", "message": "OK"}, "response": CIPHERTEXT}
    assert open_envelope(body, CONS_ID, SECRET, TS) == json.loads(PLAIN)


def test_open_envelope_passes_unencrypted_responses_through():
    assert open_envelope({"metaData": {"code": "200", "message": "OK"}, "response": None}, CONS_ID, SECRET, TS) is None


@pytest.mark.parametrize(
    "code, message, status",
    [
        ("201", "Peserta Tidak Ditemukan", 404),
        (201, "Data Tidak ditemukan", 404),
        ("400", "Format tglSEP salah", 422),
    ],
)
def test_open_envelope_turns_bpjs_errors_into_fhir_errors(code, message, status):
    with pytest.raises(FhirError) as err:
        open_envelope({"metaData": {"code": code, "message": message}, "response": None}, CONS_ID, SECRET, TS)
    assert err.value.status == status
    assert message in err.value.issues[0].diagnostics
    assert err.value.issues[0].expression == "metaData.code"


def test_pcare_accepts_201_created():
    body = {"metaData": {"code": 201, "message": "CREATED"}, "response": encrypt('{"field":"noUrut","message":"A1"}', CONS_ID, SECRET, TS)}
    assert open_envelope(body, CONS_ID, SECRET, TS, ok_codes=("200", "201")) == {"field": "noUrut", "message": "A1"}


def test_envelope_without_metadata_is_malformed():
    with pytest.raises(FhirError) as err:
        open_envelope({"response": "x"}, CONS_ID, SECRET, TS)
    assert err.value.status == 502
