"""gzip-compressed responses for clients that accept them (RFC 9110 section 12.5.3).

A searchset of 100 Encounters is ~160 kB of JSON and ~13 kB gzipped; over a Puskesmas link that
is most of the time a page takes, and a Bulk Data NDJSON file shrinks the same way.

Why not Starlette's ``GZipMiddleware``: it costs ~7 µs on every request of a client that accepts
gzip, small ones included (it builds header objects and normalizes its excluded types per
request: 8.1 against 1.4 µs for an 800-byte answer, measured; reads of one resource run at
~7,000/s a worker, and nearly every HTTP client sends ``Accept-Encoding: gzip``), and it takes a
plain ``gzip`` substring as consent (``gzip;q=0`` was compressed, ``*`` was not). Here the
common case, a small body in one message, costs one length check, and the header is read as the
RFC says. Left alone: a 206, a body that already has a ``Content-Encoding``, media that are
compressed already (images, audio, video, zip and gzip files), and a request that does not
accept gzip, which is not wrapped at all.

Level 1 (nginx's default): 12x on FHIR JSON already, at ~280 MB/s; level 6 is 16x at half the
speed. A body of 256 kB or more is compressed on a thread, so that the event loop goes on.
"""

from __future__ import annotations

import asyncio
import zlib
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: zlib level: fast, and most of the size gain on JSON and XML
LEVEL = 1
#: bodies at least this large are compressed off the event loop
THREAD_BYTES = 256 * 1024
#: media types that are compressed already: gzip would only cost time
_PACKED_PREFIXES = (b"image/", b"audio/", b"video/", b"font/woff", b"application/zip", b"application/gzip", b"application/x-gzip")
_GZIP_WBITS = 16 + zlib.MAX_WBITS


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an ``Accept-Encoding`` value allows a gzip-coded response."""
    star = False
    for part in accept_encoding.split(","):
        coding, _, params = part.partition(";")
        coding = coding.strip().lower()
        if coding in ("gzip", "x-gzip"):
            return _weight(params) > 0
        if coding == "*":
            star = _weight(params) > 0
    return star


def _weight(params: str) -> float:
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                return float(value.strip())
            except ValueError:
                return 1.0  # a malformed weight: as if none was given
    return 1.0


def _accept_encoding(scope: Scope) -> str:
    return ",".join(value.decode("latin-1") for name, value in scope["headers"] if name == b"accept-encoding")


class CompressedResponses:
    """``app`` whose responses of at least ``min_bytes`` are gzipped for clients that accept it."""

    def __init__(self, app: ASGIApp, min_bytes: int) -> None:
        self.app = app
        self.min_bytes = min_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and accepts_gzip(_accept_encoding(scope)):
            await self.app(scope, receive, _Gzipping(send, self.min_bytes).send)
        else:
            await self.app(scope, receive, send)


def _compressible(start: Message, min_bytes: int) -> bool:
    """Whether the response ``start`` begins may be gzipped: not a 206, not encoded already, not
    packed media, and not declared shorter than ``min_bytes`` (a small file is sent in chunks too)."""
    if start["status"] == 206:
        return False
    for name, value in start.get("headers") or ():
        name = name.lower()
        if name == b"content-encoding":
            return False
        if name == b"content-type" and value.lower().startswith(_PACKED_PREFIXES):
            return False
        if name == b"content-length" and value.isdigit() and int(value) < min_bytes:
            return False
    return True


def _gzip_headers(start: Message, length: int | None) -> list[tuple[bytes, bytes]]:
    """The response's headers for its gzipped body: Content-Encoding, Vary (merged with one there
    is) and the new Content-Length (none while the body streams)."""
    headers: list[tuple[bytes, bytes]] = []
    vary = b"Accept-Encoding"
    for name, value in start.get("headers") or ():
        lower = name.lower()
        if lower == b"content-length":
            continue
        if lower == b"vary":
            vary = value if b"accept-encoding" in value.lower() else value + b", Accept-Encoding"
            continue
        headers.append((name, value))
    headers += [(b"content-encoding", b"gzip"), (b"vary", vary)]
    if length is not None:
        headers.append((b"content-length", str(length).encode("ascii")))
    return headers


class _Gzipping:
    """One response's ``send``: holds the start until the first body message says how large the
    body is, then sends it as it is (small, or not compressible) or gzipped."""

    __slots__ = ("_compressor", "_min_bytes", "_passing", "_send", "_start")

    def __init__(self, send: Send, min_bytes: int) -> None:
        self._send = send
        self._min_bytes = min_bytes
        self._start: Message | None = None
        self._passing = False
        self._compressor: Any = None

    async def send(self, message: Message) -> None:
        if self._passing:
            await self._send(message)
            return
        kind = message["type"]
        if kind == "http.response.start":
            if _compressible(message, self._min_bytes):
                self._start = message
            else:
                self._passing = True
                await self._send(message)
            return
        start = self._start
        if kind != "http.response.body" or start is None:  # e.g. a path to send: as it is
            await self._pass(message)
            return
        body: bytes = message.get("body", b"")
        more = bool(message.get("more_body", False))
        if self._compressor is None:
            if not more and len(body) < self._min_bytes:
                await self._pass(message)
                return
            self._compressor = zlib.compressobj(LEVEL, zlib.DEFLATED, _GZIP_WBITS)
            data = await self._compress(body, more)
            await self._send({**start, "headers": _gzip_headers(start, None if more else len(data))})
        else:
            data = await self._compress(body, more)
        await self._send({"type": "http.response.body", "body": data, "more_body": more})

    async def _pass(self, message: Message) -> None:
        self._passing = True
        if self._start is not None:
            await self._send(self._start)
        await self._send(message)

    async def _compress(self, body: bytes, more: bool) -> bytes:
        if len(body) >= THREAD_BYTES:
            return await asyncio.to_thread(self._deflate, body, more)
        return self._deflate(body, more)

    def _deflate(self, body: bytes, more: bool) -> bytes:
        data: bytes = self._compressor.compress(body)
        return data if more else data + self._compressor.flush()
