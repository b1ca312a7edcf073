"""A SATUSEHAT simulator for the tests (and the benchmark): a real HTTP server on 127.0.0.1.

It models what tests/../shared reference (satusehat-sync.md) documents: the token endpoint
(``POST /oauth2/v1/accesstoken?grant_type=client_credentials``, form client_id/client_secret,
string ``expires_in``), Patient/Practitioner look-up by NIK (searchset Bundles), server-assigned
ids (UUIDs), Encounter rules with ``(RuleNumber: NNNNN)`` in OperationOutcome details, duplicate
identifiers refused with rule 20002, references that must exist (20007), search by identifier,
PUT of a known id. Faults are queued per call: plain-text 5xx, 429 with Retry-After, 401
(token rejected), a slow answer, and a create whose answer is lost (the resource is created, the
connection dropped)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

NIK = "https://fhir.kemkes.go.id/id/nik"
ORG = "100000001"
CLIENT_ID = "sim-client"
CLIENT_SECRET = "sim-secret-do-not-print"
PATIENTS = {"9271060312000001": "P02478375538", "9204014804000002": "P03647103112"}
PRACTITIONERS = {"7209061211900001": "10009880728"}


@dataclass
class Fault:
    #: which calls it hits: "token", "POST", "PUT", "GET" or "any"
    on: str
    #: http status to answer (0: drop the connection without an answer)
    status: int = 500
    #: seconds to wait first
    delay: float = 0.0
    #: the create happens, then the connection is dropped (a lost answer)
    after_create: bool = False
    retry_after: str | None = None
    #: only calls whose path contains this
    path: str = ""


@dataclass
class Call:
    method: str
    path: str
    body: Any
    status: int


@dataclass
class Simulator:
    token_lifetime: int = 3599
    #: the facility's Organization id and credentials this simulator accepts
    org: str = ORG
    client_id: str = CLIENT_ID
    client_secret: str = CLIENT_SECRET
    #: seconds every FHIR answer takes (the benchmark's 50 ms)
    latency: float = 0.0
    faults: list[Fault] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    #: type -> id -> resource
    store: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    #: (type, system, value) -> ids: the duplicate rule and look-ups without scanning the store
    #: (a scan per create under the lock made a 10,000-visit backlog quadratic)
    by_ident: dict[tuple[str, str, str], set[str]] = field(default_factory=dict)
    tokens: dict[str, float] = field(default_factory=dict)
    in_flight: int = 0
    most_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # -- test helpers ----------------------------------------------------------------------
    def resources(self, res_type: str) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.store.get(res_type, {}).values())

    def add(self, resource: dict[str, Any]) -> None:
        """A resource SATUSEHAT has already (registered by hand), with its id."""
        with self.lock:
            self.store.setdefault(resource["resourceType"], {})[resource["id"]] = resource
            for key in _ident_keys(resource["resourceType"], resource):
                self.by_ident.setdefault(key, set()).add(resource["id"])

    def clear(self) -> None:
        """Forget every resource, call and fault (between tests)."""
        with self.lock:
            self.faults.clear()
            self.calls.clear()
            self.store.clear()
            self.by_ident.clear()

    def by_identifier(self, res_type: str, value: str) -> list[dict[str, Any]]:
        return [r for r in self.resources(res_type) if any(i.get("value") == value for i in r.get("identifier") or [])]

    def expire_tokens(self) -> None:
        with self.lock:
            self.tokens.clear()

    def fail(self, *faults: Fault) -> None:
        with self.lock:
            self.faults.extend(faults)

    def count(self, method: str, prefix: str) -> int:
        with self.lock:
            return sum(1 for c in self.calls if c.method == method and c.path.startswith(prefix))

    # -- the server -------------------------------------------------------------------------
    def start(self) -> Simulator:
        sim = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                with sim.lock:
                    sim.in_flight += 1
                    sim.most_in_flight = max(sim.most_in_flight, sim.in_flight)
                try:
                    sim._handle(self, raw)
                finally:
                    with sim.lock:
                        sim.in_flight -= 1

            do_POST = do_PUT = do_GET = _any

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _fault_for(self, kind: str, path: str) -> Fault | None:
        with self.lock:
            for f in self.faults:
                if (f.on == kind or f.on == "any") and f.path in path:
                    self.faults.remove(f)
                    return f
        return None

    def _handle(self, h: BaseHTTPRequestHandler, raw: bytes) -> None:
        parts = urlsplit(h.path)
        kind = "token" if parts.path.endswith("/oauth2/v1/accesstoken") else h.command
        fault = self._fault_for(kind, h.path)
        if fault is not None and fault.delay:
            time.sleep(fault.delay)
        if kind == "token":
            if fault is not None and not fault.after_create and fault.status:
                return self._answer(h, fault.status, "text/plain", b"Gateway Timeout", None, raw)
            return self._token(h, parts.query, raw)
        if self.latency:
            time.sleep(self.latency)
        auth = h.headers.get("Authorization") or ""
        with self.lock:
            known = self.tokens.get(auth.removeprefix("Bearer "))
        if known is None or known < time.monotonic():
            body = {"fault": {"faultstring": "Access Token expired", "detail": {"errorcode": "keymanagement.service.access_token_expired"}}}
            return self._json(h, 401, body, raw)
        if fault is not None and not fault.after_create:
            if fault.status == 0:
                return self._drop(h, raw)
            if fault.status >= 500:
                return self._answer(h, fault.status, "text/plain", b"Internal Server Error", None, raw)
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else None
            return self._json(h, fault.status, _outcome("error", "throttled", "too many requests"), raw, headers)
        path = parts.path.split("/fhir-r4/v1/", 1)[-1]
        body = json.loads(raw) if raw else None
        if h.command == "GET":
            return self._search(h, path, parts.query, raw)
        if h.command == "POST":
            status, answer = self._create(path, body)
            if fault is not None and fault.after_create and status == 201:
                return self._drop(h, raw)
            return self._json(h, status, answer, raw)
        status, answer = self._update(path, body)
        return self._json(h, status, answer, raw)

    def _token(self, h: BaseHTTPRequestHandler, query: str, raw: bytes) -> None:
        form = parse_qs(raw.decode())
        if parse_qs(query).get("grant_type") != ["client_credentials"]:
            return self._json(h, 400, _outcome("error", "value", "grant_type missing"), raw)
        if form.get("client_id") != [self.client_id] or form.get("client_secret") != [self.client_secret]:
            text = "The user or system was not able to be authenticated (either client_id or client_secret combination is unacceptable)"
            return self._json(h, 401, _outcome("invalid", "value", text), raw)
        token = uuid.uuid4().hex
        with self.lock:
            self.tokens[token] = time.monotonic() + self.token_lifetime
        body = {
            "refresh_token_expires_in": "0",
            "token_type": "BearerToken",
            "issued_at": str(int(time.time() * 1000)),
            "client_id": self.client_id,
            "access_token": token,
            "expires_in": str(self.token_lifetime),
            "status": "approved",
        }
        return self._json(h, 200, body, raw)

    def _search(self, h: BaseHTTPRequestHandler, path: str, query: str, raw: bytes) -> None:
        params = parse_qs(query)
        ident = unquote(params.get("identifier", [""])[0])
        system, _, value = ident.partition("|")
        found: list[dict[str, Any]] = []
        if path in ("Patient", "Practitioner") and system == NIK:
            table = PATIENTS if path == "Patient" else PRACTITIONERS
            if value in table:
                found = [{"resourceType": path, "id": table[value], "identifier": [{"system": NIK, "value": value}]}]
        else:
            with self.lock:
                found = [self.store[path][i] for i in sorted(self.by_ident.get((path, system, value), ()))]
        bundle = {"resourceType": "Bundle", "type": "searchset", "total": len(found), "entry": [{"resource": r} for r in found]}
        return self._json(h, 200, bundle, raw)

    def _rules(self, res_type: str, body: Any) -> dict[str, Any] | None:
        if not isinstance(body, dict) or body.get("resourceType") != res_type:
            return _rule(20006, "resourceType does not match the URL")
        for ident in body.get("identifier") or []:
            if not str(ident.get("system", "")).endswith(f"/{self.org}"):
                return _rule(10117, f"Wrong organization ID provided by system URL: {ident.get('system')}")
        subject = (body.get("subject") or {}).get("reference", "")
        if subject and subject.split("/", 1)[1] not in {*PATIENTS.values()}:
            return _rule(20007, f"Referenced resource not found: {subject}")
        enc = (body.get("encounter") or {}).get("reference")
        if enc and enc.split("/", 1)[1] not in self.store.get("Encounter", {}):
            return _rule(20007, f"Referenced resource not found: {enc}")
        if res_type == "Encounter":
            period = body.get("period") or {}
            if body.get("status") == "finished" and not period.get("end"):
                return _rule(10121, "period.end is required for a finished Encounter")
            if not body.get("location"):
                return _rule(10120, "location must not be null")
            for loc in body.get("location") or []:
                ref = loc["location"]["reference"].split("/", 1)[1]
                if ref not in self.store.get("Location", {}):
                    return _rule(20007, f"Referenced resource not found: Location/{ref}")
            if (body.get("serviceProvider") or {}).get("reference") != f"Organization/{self.org}":
                return _rule(10124, "serviceProvider must be the organization")
            for key in ("start", "end"):
                if key in period and not str(period[key]).endswith("+00:00"):
                    return _rule(10001, f"period.{key} must be UTC")
        if res_type == "Organization":
            parent = str((body.get("partOf") or {}).get("reference", "")).split("/", 1)[-1]
            if parent != self.org and parent not in self.store.get("Organization", {}):
                return _rule(20007, f"Referenced resource not found: Organization/{parent}")
        if res_type == "Condition" and body.get("code", {}).get("coding", [{}])[0].get("code") == "X99.9":
            return _rule(10035, "Code X99.9 is not a valid ICD-10 2010 code")
        return None

    def _create(self, res_type: str, body: Any) -> tuple[int, dict[str, Any]]:
        with self.lock:
            problem = self._rules(res_type, body)
            if problem is not None:
                return 400, problem
            if any(self.by_ident.get(key) for key in _ident_keys(res_type, body)):
                return 400, _rule(20002, f"Found duplicate resource: {res_type}", code="duplicate")
            new_id = str(uuid.uuid4())
            stored = {**body, "id": new_id, "meta": {"versionId": "1"}}
            self.store.setdefault(res_type, {})[new_id] = stored
            for key in _ident_keys(res_type, stored):
                self.by_ident.setdefault(key, set()).add(new_id)
            return 201, stored

    def _update(self, path: str, body: Any) -> tuple[int, dict[str, Any]]:
        res_type, _, res_id = path.partition("/")
        with self.lock:
            if res_id not in self.store.get(res_type, {}):
                return 404, _outcome("error", "not-found", f"{path} not found")
            if not isinstance(body, dict) or body.get("id") != res_id:
                return 400, _rule(20008, "id in the body must match the URL")
            problem = self._rules(res_type, body)
            if problem is not None:
                return 400, problem
            before = self.store[res_type][res_id]
            version = int(before["meta"]["versionId"]) + 1
            stored = {**body, "meta": {"versionId": str(version)}}
            self.store[res_type][res_id] = stored
            for key in _ident_keys(res_type, before):
                self.by_ident.get(key, set()).discard(res_id)
            for key in _ident_keys(res_type, stored):
                self.by_ident.setdefault(key, set()).add(res_id)
            return 200, stored

    # -- answering ----------------------------------------------------------------------------
    def _record(self, h: BaseHTTPRequestHandler, status: int, raw: bytes) -> None:
        try:
            body = json.loads(raw) if raw and raw[:1] == b"{" else raw.decode()
        except ValueError:
            body = raw.decode(errors="replace")
        with self.lock:
            self.calls.append(Call(h.command, urlsplit(h.path).path.split("/v1/", 1)[-1], body, status))

    def _json(self, h: BaseHTTPRequestHandler, status: int, body: Any, raw: bytes, headers: dict[str, str] | None = None) -> None:
        self._answer(h, status, "application/json", json.dumps(body).encode(), headers, raw)

    def _answer(self, h: BaseHTTPRequestHandler, status: int, ctype: str, data: bytes, headers: dict[str, str] | None, raw: bytes) -> None:
        self._record(h, status, raw)
        try:
            h.send_response(status)
        except OSError:
            return
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        try:
            h.wfile.write(data)
        except OSError:  # the client gave up (timed out): the call's effect stays
            h.close_connection = True

    def _drop(self, h: BaseHTTPRequestHandler, raw: bytes) -> None:
        self._record(h, 0, raw)
        h.close_connection = True
        h.connection.close()


def _outcome(severity: str, code: str, text: str) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [{"severity": severity, "code": code, "details": {"text": text}}]}


def _rule(number: int, text: str, code: str = "value") -> dict[str, Any]:
    return _outcome("error", code, f"{text} (RuleNumber: {number})")


def _ident_keys(res_type: str, resource: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(res_type, str(i.get("system")), str(i.get("value"))) for i in resource.get("identifier") or [] if isinstance(i, dict)]
