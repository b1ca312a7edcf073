"""Requests the HTTP parser refuses are answered with an OperationOutcome too (api/http_protocol.py).

uvicorn answered them itself with ``text/plain`` "Invalid HTTP request received.": a GET search
whose URL is over llhttp's 65,535 bytes (a long ``_id`` or ``identifier`` list), a header with a
character HTTP forbids, a chunked body that is not one. The real server runs here, as a client
meets it, and the bytes go over a socket as sent.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import orjson
import pytest

from tests.e2e.server import ServerProcess

pytestmark = pytest.mark.slow  # a real server process


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("unparsable")
    with ServerProcess(f"sqlite:///{folder / 'fhir.sqlite3'}", log=folder / "server.log") as running:
        yield running


def exchange(server: ServerProcess, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes; the status, headers and body of the answer (read until the server closes
    the connection or the body's declared length arrived)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as conn:
        conn.sendall(request)
        data = b""
        while True:
            head, sep, rest = data.partition(b"\r\n\r\n")
            if sep:
                lines = head.decode("latin-1").split("\r\n")
                headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
                if len(rest) >= int(headers.get("content-length", "-1")) >= 0:
                    return int(lines[0].split()[1]), headers, rest[: int(headers["content-length"])]
            chunk = conn.recv(65536)
            if not chunk:
                raise AssertionError(f"the connection closed before a whole answer: {data[:200]!r}")
            data += chunk


def get(path: bytes, extra: bytes = b"") -> bytes:
    return b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/fhir+json\r\n" + extra + b"\r\n"


def assert_outcome(status: int, headers: dict[str, str], body: bytes, expected_status: int, code: str) -> str:
    assert status == expected_status, body
    assert headers["content-type"].startswith("application/fhir+json")
    outcome = orjson.loads(body)
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["severity"] == "error"
    assert outcome["issue"][0]["code"] == code
    return str(outcome["issue"][0]["diagnostics"])


def test_a_url_longer_than_the_parser_reads_is_a_414_operation_outcome(server: ServerProcess) -> None:
    ids = ",".join(f"p{i:06d}" for i in range(9000))  # 72,000 bytes of _id values
    status, headers, body = exchange(server, get(b"/fhir/Patient?_id=" + ids.encode()))
    diagnostics = assert_outcome(status, headers, body, 414, "too-costly")
    assert "_search" in diagnostics  # says what to do instead


def test_a_long_url_the_parser_reads_gets_the_servers_own_414(server: ServerProcess) -> None:
    """Below the parser's limit and above FHIR_MAX_QUERY_BYTES: the same status and form."""
    status, headers, body = exchange(server, get(b"/fhir/Patient?name=" + b"x" * 40000))
    assert_outcome(status, headers, body, 414, "too-costly")


@pytest.mark.parametrize(
    "request_bytes",
    [
        get(b"/fhir/Patient", b"Bad Header: x\r\n"),  # a space in a header name
        b"GET /fhir/Patient HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Ctl: a\x01b\r\n\r\n",  # a control character in a value
        b"POST /fhir/Patient HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/fhir+json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",  # a chunk size that is not hex
        b"G\x00ET /fhir/metadata HTTP/1.1\r\n\r\n",  # not a method
    ],
    ids=["header-name", "header-value", "chunked-body", "method"],
)
def test_a_malformed_request_is_a_400_operation_outcome(server: ServerProcess, request_bytes: bytes) -> None:
    status, headers, body = exchange(server, request_bytes)
    assert_outcome(status, headers, body, 400, "structure")
    assert headers["connection"] == "close"


def test_the_server_still_answers_after_them(server: ServerProcess) -> None:
    exchange(server, get(b"/fhir/Patient", b"Bad Header: x\r\n"))
    status, _, body = exchange(server, get(b"/fhir/metadata"))
    assert status == 200
    assert orjson.loads(body)["resourceType"] == "CapabilityStatement"
