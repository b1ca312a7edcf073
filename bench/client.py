"""A tiny HTTP client for preloading data through a server's own API (loopback only)."""

from __future__ import annotations

import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import orjson

HEADERS = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json", "Prefer": "return=minimal"}


class HttpError(RuntimeError):
    def __init__(self, status: int, body: bytes, what: str):
        super().__init__(f"{what}: HTTP {status}: {body[:400]!r}")
        self.status = status
        self.body = body


def request(
    method: str, url: str, body: Any = None, headers: dict[str, str] | None = None, timeout: float = 300
) -> tuple[int, dict[str, str], bytes]:
    data = orjson.dumps(body) if body is not None and not isinstance(body, bytes) else body
    req = urllib.request.Request(url, data=data, method=method, headers={**HEADERS, **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def location_id(location: str) -> tuple[str, str]:
    """``[base/]Type/id[/_history/v]`` -> (Type, id)."""
    parts = location.split("/_history")[0].rstrip("/").split("/")
    return parts[-2], parts[-1]


def post_resource(fhir_base: str, resource: dict[str, Any]) -> str:
    status, headers, body = request("POST", f"{fhir_base}/{resource['resourceType']}", resource)
    if status >= 300:
        raise HttpError(status, body, f"create {resource['resourceType']}")
    loc = headers.get("Location") or headers.get("location") or ""
    if not loc and body:
        return orjson.loads(body)["id"]
    return location_id(loc)[1]


def post_bundle(fhir_base: str, bundle: dict[str, Any] | bytes) -> list[tuple[str, str]]:
    """POST a transaction/batch; the (Type, id) of every entry in order (("", "") where unknown)."""
    status, _, body = request("POST", fhir_base, bundle)
    if status >= 300:
        raise HttpError(status, body, "transaction")
    out = []
    for entry in orjson.loads(body).get("entry", []):
        resp = entry.get("response", {})
        if not str(resp.get("status", "")).startswith("2"):
            raise HttpError(int(str(resp.get("status", "500")).split()[0]), orjson.dumps(resp), "batch entry")
        loc = resp.get("location") or ""
        out.append(location_id(loc) if loc else ("", ""))
    return out


@dataclass
class Progress:
    """Prints progress with a rate and an estimate of the time left, at most every ``every`` seconds."""

    label: str
    total: int
    unit: str = "resources"
    every: float = 5.0
    done: int = 0
    started: float = field(default_factory=time.monotonic)
    _last: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, n: int) -> None:
        with self._lock:
            self.done += n
            now = time.monotonic()
            if now - self._last >= self.every or self.done >= self.total:
                self._last = now
                self.print(now)

    def print(self, now: float | None = None) -> None:
        el = (now or time.monotonic()) - self.started
        rate = self.done / el if el else 0.0
        eta = (self.total - self.done) / rate if rate else 0.0
        print(
            f"  {self.label}: {self.done:,}/{self.total:,} {self.unit} ({rate:,.0f}/s, {el:.0f}s elapsed, ~{eta:.0f}s left)",
            file=sys.stderr,
            flush=True,
        )

    @property
    def rate(self) -> float:
        el = time.monotonic() - self.started
        return self.done / el if el else 0.0


def load_bundles(
    fhir_base: str,
    bundles: Iterable[dict[str, Any]],
    threads: int,
    progress: Progress | None = None,
    on_result: Callable[[dict[str, Any], list[tuple[str, str]]], None] | None = None,
) -> None:
    """POST bundles with ``threads`` in flight; ``on_result(bundle, ids)`` runs for each, in completion order."""

    def one(b: dict[str, Any]) -> None:
        ids = post_bundle(fhir_base, b)
        if on_result:
            on_result(b, ids)
        if progress:
            progress.add(len(b["entry"]))

    with ThreadPoolExecutor(max(1, threads)) as pool:
        in_flight = []
        for b in bundles:
            in_flight.append(pool.submit(one, b))
            if len(in_flight) >= threads * 2:
                in_flight.pop(0).result()
        for f in in_flight:
            f.result()


def chunks(it: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for x in it:
        batch.append(x)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
