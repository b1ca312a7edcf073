"""uvicorn's HTTP/1.1 protocol (httptools), answering a request it cannot parse as FHIR does.

A request the parser refuses never reaches the application: uvicorn answered it itself with a
``text/plain`` "Invalid HTTP request received.", which a FHIR client cannot read as an
OperationOutcome. The commonest case is a search sent as one long GET: llhttp refuses a URL over
65,535 bytes, above the server's own ``FHIR_MAX_QUERY_BYTES`` (``api/guard.py``, 414), so the
longest URLs got a plain-text 400 while shorter long ones got the OperationOutcome. Here both are
a 414 OperationOutcome, and any other malformed request (a bad header, a broken chunked body) a
400 OperationOutcome; the connection is closed after it, as uvicorn does.
"""

from __future__ import annotations

from http import HTTPStatus

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from fhir_server import jsonio
from fhir_server.errors import error, operation_outcome

#: the longest URL llhttp accepts (``httptools.parse_url``); longer is refused before the app
PARSER_MAX_URL_BYTES = 65535


def unparsable_request_answer(url_bytes: int) -> tuple[int, bytes]:
    """The status and OperationOutcome for a request the HTTP parser refused, whose URL so far
    has ``url_bytes`` bytes."""
    if url_bytes > PARSER_MAX_URL_BYTES:
        status, issue = (
            414,
            error(
                "too-costly",
                f"The URL is longer than {PARSER_MAX_URL_BYTES:,} bytes, more than HTTP/1.1 request lines are read here: "
                "send a long search as POST [base]/[type]/_search with its parameters in the form body",
            ),
        )
    else:
        status, issue = (
            400,
            error("structure", "The request is not valid HTTP/1.1 (its request line, headers or chunked body could not be read)"),
        )
    return status, jsonio.dumps(operation_outcome([issue]))


class FhirHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol whose answer to an unparsable request is an OperationOutcome."""

    def send_400_response(self, msg: str) -> None:
        # ``url`` holds what the parser read of this request's URL (uvicorn resets it per message)
        status, body = unparsable_request_answer(len(getattr(self, "url", b"")))
        head = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n".encode("ascii")]
        for name, value in self.server_state.default_headers:
            head.extend([name, b": ", value, b"\r\n"])
        head.append(
            b"content-type: application/fhir+json; charset=utf-8\r\n"
            b"x-content-type-options: nosniff\r\n"
            b"content-length: " + str(len(body)).encode("ascii") + b"\r\n"
            b"connection: close\r\n\r\n"
        )
        self.transport.write(b"".join(head) + body)
        self.transport.close()
