"""A real HTTP receiver for notifications: a server thread on a loopback address that records
every request (method, path, headers, body) and answers what the test tells it to."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    host: str = "127.0.0.1"
    #: the status to answer (tests switch it: 500 = "down"); 0: hang up without answering
    status: int = 200
    #: seconds to wait before answering (a slow receiver)
    delay: float = 0.0
    #: headers of the answers (e.g. Retry-After)
    answer_headers: dict[str, str] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    release: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://{self.host}:{self._server.server_address[1]}/hook"

    def start(self) -> Receiver:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                item = Received(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                with outer._lock:
                    outer.received.append(item)
                if outer.delay:
                    outer.release.wait(outer.delay)
                if outer.status == 0:
                    self.close_connection = True
                    return
                self.send_response(outer.status)
                for name, value in outer.answer_headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_PUT = do_GET = do_DELETE = _any

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((self.host, 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def bundles(self) -> list[Any]:
        with self._lock:
            return [r.json() for r in self.received if r.body]

    def of_type(self, kind: str) -> list[Any]:
        return [b for b in self.bundles() if status_of(b).get("type") == kind]


def status_of(bundle: Any) -> dict[str, Any]:
    """The SubscriptionStatus parameters of a notification Bundle as {name: value} (events: list)."""
    params = bundle["entry"][0]["resource"]["parameter"]
    out: dict[str, Any] = {"events": []}
    for p in params:
        if p["name"] == "notification-event":
            out["events"].append({q["name"]: next(v for k, v in q.items() if k.startswith("value")) for q in p["part"]})
        else:
            out[p["name"]] = next(v for k, v in p.items() if k.startswith("value"))
    return out


def event_numbers(receiver: Receiver) -> list[int]:
    return [int(e["event-number"]) for b in receiver.of_type("event-notification") for e in status_of(b)["events"]]
