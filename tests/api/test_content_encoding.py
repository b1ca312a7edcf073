"""Request bodies sent compressed (RFC 9110 §8.4: Content-Encoding). HAPI's client compresses
large bodies with gzip (GZipContentInterceptor), as do integration engines on slow links; such a
body was parsed as it came and refused as "Body is not valid UTF-8". Every door reads bodies
through ``http.read_body``, which now undoes gzip and deflate; other codings get 415.
"""

from __future__ import annotations

import gzip
import zlib

import orjson
import pytest

from fhir_server.config import Settings
from tests.security.test_token_auth_http import auth, token_for

H = {"Content-Type": "application/fhir+json"}


def _patient(family: str) -> bytes:
    return orjson.dumps({"resourceType": "Patient", "name": [{"family": family}]})


def _raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


def _found(client, family: str) -> int:
    return client.get(f"/fhir/Patient?family:exact={family}&_summary=count").json()["total"]


@pytest.mark.parametrize(
    ("coding", "pack"),
    [("gzip", gzip.compress), ("x-gzip", gzip.compress), ("deflate", zlib.compress), ("deflate", _raw_deflate), ("identity", bytes)],
)
def test_a_compressed_create_is_stored(client, coding, pack):
    family = f"Gz{coding.replace('-', '')}{pack.__name__.strip('_')}"
    r = client.post("/fhir/Patient", content=pack(_patient(family)), headers={**H, "Content-Encoding": coding})
    assert r.status_code == 201, r.text
    assert r.json()["name"] == [{"family": family}]
    assert _found(client, family) == 1


def test_compressed_bodies_through_the_other_doors(client):
    """Update, transaction Bundle, a form-encoded search, an operation: one reader for all."""
    put = client.put(
        "/fhir/Patient/gz1",
        content=gzip.compress(orjson.dumps({"resourceType": "Patient", "id": "gz1", "name": [{"family": "GzPut"}]})),
        headers={**H, "Content-Encoding": "gzip"},
    )
    assert put.status_code == 201, put.text
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": orjson.loads(_patient(f"GzTxn{i}")), "request": {"method": "POST", "url": "Patient"}} for i in range(3)],
    }
    txn = client.post("/fhir", content=gzip.compress(orjson.dumps(bundle)), headers={**H, "Content-Encoding": "gzip"})
    assert txn.status_code == 200, txn.text
    assert [e["response"]["status"][:3] for e in txn.json()["entry"]] == ["201"] * 3
    search = client.post(
        "/fhir/Patient/_search",
        content=gzip.compress(b"family:exact=GzPut"),
        headers={"Content-Type": "application/x-www-form-urlencoded", "Content-Encoding": "gzip"},
    )
    assert search.status_code == 200, search.text
    assert [e["resource"]["id"] for e in search.json()["entry"]] == ["gz1"]
    validate = client.post(
        "/fhir/Patient/$validate",
        content=gzip.compress(b'{"resourceType":"Patient","gender":"x"}'),
        headers={**H, "Content-Encoding": "gzip"},
    )
    assert validate.status_code == 200 and "administrative-gender" in validate.text


def test_codings_applied_in_turn_are_undone_in_turn(client):
    body = zlib.compress(gzip.compress(_patient("GzTwice")))  # gzip first, then deflate
    r = client.post("/fhir/Patient", content=body, headers={**H, "Content-Encoding": "gzip, deflate"})
    assert r.status_code == 201, r.text
    assert _found(client, "GzTwice") == 1


@pytest.mark.parametrize("coding", ["br", "zstd", "compress"])
def test_an_unsupported_coding_is_415_naming_those_read(client, coding):
    r = client.post("/fhir/Patient", content=_patient("GzNo"), headers={**H, "Content-Encoding": coding})
    assert r.status_code == 415, r.text
    assert r.json()["resourceType"] == "OperationOutcome"
    assert f"'{coding}'" in r.json()["issue"][0]["diagnostics"]
    assert r.headers["accept-encoding"] == "gzip, deflate"  # RFC 9110 §15.5.16
    assert _found(client, "GzNo") == 0


@pytest.mark.parametrize(
    "body",
    [_patient("GzPlain"), gzip.compress(_patient("GzCut"), mtime=0)[:-12], gzip.compress(_patient("GzA"), mtime=0) + b"junk"],
    ids=["not-compressed", "cut-short", "trailing-junk"],
)
def test_a_body_that_is_not_its_coding_is_400(client, body):
    r = client.post("/fhir/Patient", content=body, headers={**H, "Content-Encoding": "gzip"})
    assert r.status_code == 400, r.text
    assert r.json()["issue"][0]["diagnostics"] == "The body is not valid gzip data (Content-Encoding: gzip)"
    assert client.get("/fhir/Patient?_summary=count").json()["total"] == 0


def test_a_small_body_that_decodes_past_the_limit_is_413(client):
    limit = Settings().max_body_bytes
    bomb = gzip.compress(b'{"resourceType":"Patient","text":"' + b" " * limit + b'"}')
    assert len(bomb) < limit // 100
    r = client.post("/fhir/Patient", content=bomb, headers={**H, "Content-Encoding": "gzip"})
    assert r.status_code == 413, r.text
    assert "decoded from gzip" in r.json()["issue"][0]["diagnostics"]


def test_token_mode_a_compressed_body_is_authorized_as_any_other(secured):
    reader = token_for(secured, "system/Patient.read")
    r = secured.post("/fhir/Patient", content=gzip.compress(_patient("GzSecret")), headers={**auth(reader), "Content-Encoding": "gzip"})
    assert r.status_code == 403, r.text
    writer = token_for(secured, "system/Patient.read system/Patient.write")
    r = secured.post("/fhir/Patient", content=gzip.compress(_patient("GzSecret")), headers={**auth(writer), "Content-Encoding": "gzip"})
    assert r.status_code == 201, r.text
    found = secured.get("/fhir/Patient?family:exact=GzSecret&_summary=count", headers=auth(reader)).json()["total"]
    assert found == 1
