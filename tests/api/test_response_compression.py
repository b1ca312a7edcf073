"""Responses gzip-compressed for clients that accept it (api/compression.py, FHIR_GZIP_MIN_BYTES).

The server never compressed: a 100-entry searchset went out as ~160 kB where ~13 kB would do,
which over a Puskesmas link is most of the time a page of results takes. httpx (under
TestClient) decodes what it receives, so the tests compare the decoded body with the plain one and
read the length the server sent from ``Content-Length``.
"""

from __future__ import annotations

import gzip

import orjson
import pytest
from fastapi.testclient import TestClient

from fhir_server.app import create_app
from fhir_server.config import Settings

IDENTITY = {"Accept-Encoding": "identity"}
GZIP = {"Accept-Encoding": "gzip"}


def _load_patients(client: TestClient, count: int = 60) -> None:
    entries = [
        {
            "resource": {"resourceType": "Patient", "id": f"gz{i}", "name": [{"family": "Kompres", "given": [f"Nama{i}"]}]},
            "request": {"method": "PUT", "url": f"Patient/gz{i}"},
        }
        for i in range(count)
    ]
    r = client.post("/fhir", json={"resourceType": "Bundle", "type": "transaction", "entry": entries})
    assert r.status_code == 200, r.text


def _entries(body: bytes) -> list:
    return [e["resource"] for e in orjson.loads(body)["entry"]]


def test_a_large_searchset_is_gzipped_for_a_client_that_accepts_it(client: TestClient) -> None:
    _load_patients(client)
    plain = client.get("/fhir/Patient?family=Kompres&_count=60", headers=IDENTITY)
    packed = client.get("/fhir/Patient?family=Kompres&_count=60", headers=GZIP)
    assert "content-encoding" not in plain.headers
    assert packed.headers["content-encoding"] == "gzip"
    assert "accept-encoding" in packed.headers["vary"].lower()
    assert packed.headers["content-type"].startswith("application/fhir+json")
    sent = int(packed.headers["content-length"])
    assert sent * 5 < len(plain.content)  # repetitive JSON: many times smaller
    assert _entries(packed.content) == _entries(plain.content)  # decoded: the same resources


def test_xml_is_compressed_too(client: TestClient) -> None:
    _load_patients(client)
    packed = client.get("/fhir/Patient?family=Kompres&_count=60&_format=xml", headers=GZIP)
    assert packed.status_code == 200
    assert packed.headers["content-encoding"] == "gzip"
    assert packed.content.startswith(b"<?xml")


@pytest.mark.parametrize(
    ("accept_encoding", "compressed"),
    [
        ("gzip, deflate", True),
        ("x-gzip", True),
        ("br;q=1.0, gzip;q=0.5", True),
        ("*", True),
        ("identity", False),
        ("gzip;q=0", False),  # refused explicitly
        ("*;q=0", False),
        ("gzip;q=0, *", False),  # gzip named and refused: the wildcard is for the others
        ("br", False),
        ("deflate", False),
    ],
)
def test_only_an_accept_encoding_that_allows_gzip_gets_it(client: TestClient, accept_encoding: str, compressed: bool) -> None:
    _load_patients(client, 30)
    r = client.get("/fhir/Patient?family=Kompres&_count=30", headers={"Accept-Encoding": accept_encoding})
    assert r.status_code == 200
    assert (r.headers.get("content-encoding") == "gzip") is compressed
    assert len(_entries(r.content)) == 30


def test_a_small_response_is_sent_as_it_is(client: TestClient) -> None:
    _load_patients(client, 1)
    r = client.get("/fhir/Patient/gz0", headers=GZIP)  # a few hundred bytes
    assert r.status_code == 200
    assert "content-encoding" not in r.headers
    assert int(r.headers["content-length"]) == len(r.content)


def test_errors_are_compressed_or_not_by_the_same_rule(client: TestClient) -> None:
    r = client.get("/fhir/Patient/nope", headers=GZIP)
    assert r.status_code == 404
    assert "content-encoding" not in r.headers  # a small OperationOutcome
    assert r.json()["resourceType"] == "OperationOutcome"


def test_zero_turns_compression_off(tmp_path) -> None:
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'plain.sqlite3'}", gzip_min_bytes=0))
    with TestClient(app) as plain_app:
        _load_patients(plain_app)
        r = plain_app.get("/fhir/Patient?family=Kompres&_count=60", headers=GZIP)
        assert r.status_code == 200
        assert "content-encoding" not in r.headers
        assert int(r.headers["content-length"]) == len(r.content)


def test_the_bytes_on_the_wire_are_gzip(tmp_path) -> None:
    """httpx decodes; here the raw stream is read to show the body really is gzip data."""
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'raw.sqlite3'}"))
    with TestClient(app) as raw_client:
        _load_patients(raw_client)
        with raw_client.stream("GET", "/fhir/Patient?family=Kompres&_count=60", headers=GZIP) as r:
            wire = b"".join(r.iter_raw())
        assert r.headers["content-encoding"] == "gzip"
        assert len(wire) == int(r.headers["content-length"])
        assert len(_entries(gzip.decompress(wire))) == 60


def test_head_says_what_the_get_would_send(client: TestClient) -> None:
    _load_patients(client)
    got = client.get("/fhir/Patient?family=Kompres&_count=60", headers=GZIP)
    head = client.head("/fhir/Patient?family=Kompres&_count=60", headers=GZIP)
    assert head.status_code == 200 and head.content == b""
    for name in ("content-encoding", "vary", "content-type"):
        assert head.headers.get(name) == got.headers.get(name), name
    # the length of the body the GET would send (each searchset has its own id and time)
    assert abs(int(head.headers["content-length"]) - int(got.headers["content-length"])) < 50


# -- the ASGI layer alone ---------------------------------------------------------------------------


def _through(messages: list[dict], accept: bytes = b"gzip", min_bytes: int = 100) -> list[dict]:
    """The messages an app sending ``messages`` gets on the wire through CompressedResponses."""
    import asyncio

    from fhir_server.api.compression import CompressedResponses

    out: list[dict] = []

    async def app(scope, receive, send):
        for message in messages:
            await send(dict(message))

    async def sink(message):
        out.append(message)

    async def receive():
        return {"type": "http.request"}

    scope = {"type": "http", "headers": [(b"accept-encoding", accept)]}
    asyncio.run(CompressedResponses(app, min_bytes)(scope, receive, sink))
    return out


def _start(content_type: bytes = b"application/fhir+json", status: int = 200, *extra: tuple[bytes, bytes]) -> dict:
    return {"type": "http.response.start", "status": status, "headers": [(b"content-type", content_type), *extra]}


def _header(message: dict, name: bytes) -> bytes | None:
    return next((v for k, v in message["headers"] if k == name), None)


def test_a_streamed_body_is_gzipped_chunk_by_chunk_without_a_length() -> None:
    chunks = [b'{"a":"' + b"x" * 5000, b"y" * 5000, b'"}']
    out = _through(
        [_start(), *({"type": "http.response.body", "body": c, "more_body": True} for c in chunks), {"type": "http.response.body"}]
    )
    assert _header(out[0], b"content-encoding") == b"gzip"
    assert _header(out[0], b"content-length") is None
    assert gzip.decompress(b"".join(m.get("body", b"") for m in out[1:])) == b"".join(chunks)
    assert out[-1].get("more_body", False) is False


def test_a_body_large_enough_for_a_thread_is_gzipped_the_same() -> None:
    from fhir_server.api.compression import THREAD_BYTES

    body = b"[" + b"1," * THREAD_BYTES + b"1]"
    out = _through(
        [_start(b"application/fhir+json", 200, (b"content-length", str(len(body)).encode())), {"type": "http.response.body", "body": body}]
    )
    assert gzip.decompress(out[1]["body"]) == body
    assert _header(out[0], b"content-length") == str(len(out[1]["body"])).encode()


@pytest.mark.parametrize(
    "start",
    [
        _start(b"image/png"),
        _start(b"application/zip"),
        _start(b"application/fhir+json", 206),
        _start(b"application/fhir+json", 200, (b"content-encoding", b"br")),
    ],
    ids=["image", "zip", "partial", "encoded"],
)
def test_compressed_media_partial_and_encoded_bodies_are_left_alone(start: dict) -> None:
    body = b"z" * 5000
    out = _through([start, {"type": "http.response.body", "body": body}])
    assert out[0]["headers"] == start["headers"] and out[1]["body"] == body


def test_vary_is_merged_with_the_one_there_is() -> None:
    out = _through([_start(b"application/fhir+json", 200, (b"vary", b"Origin")), {"type": "http.response.body", "body": b"v" * 5000}])
    assert _header(out[0], b"vary") == b"Origin, Accept-Encoding"
    assert _header(out[0], b"content-encoding") == b"gzip"


def test_a_small_body_declared_by_its_length_is_not_gzipped_even_in_chunks() -> None:
    """A small export file is streamed (``more_body``) but its Content-Length says it is small."""
    start = _start(b"application/fhir+ndjson", 200, (b"content-length", b"40"))
    out = _through([start, {"type": "http.response.body", "body": b"a" * 40, "more_body": True}, {"type": "http.response.body"}])
    assert out[0]["headers"] == start["headers"]
    assert b"".join(m.get("body", b"") for m in out[1:]) == b"a" * 40
