"""The hot path (``api.hot_path.HotPath``) and the FastAPI routes answer byte-identically.

``HotPath`` answers plain reads by id, plain JSON searches and plain creates before FastAPI's router
and lets everything else fall through (docs/architecture.md, "The ASGI layers in front of FastAPI").
Whatever it answers must be exactly what the routes would have answered: status, body bytes and
headers (no Date header is produced in-process; a Bundle's ``id`` and ``meta.lastUpdated`` are
per-response values and are the only bytes normalised; for creates also the server-assigned id,
timestamps and Location).

How the route path is forced: the app's outer ASGI chain (``FhirApp.outer``: guard, optional CORS,
``HotPath``) is copied with the ``HotPath`` layer spliced out, so the same request on the same app
and database goes guard -> FastAPI. A ``Switch`` installed as ``FhirApp.outer`` sends each request
through either chain; the fast chain's copy counts the requests ``HotPath`` let fall through, so the
tests can check that the cases meant for the hot path did take it (otherwise a comparison would
compare the routes with themselves). An explicit ``Accept: application/fhir+json`` does *not* force the
route path: ``HotPath`` serves it too.

Both auth modes: open (FHIR_AUTH=none) and token mode with an allowed, a narrower (includes filtered,
other types refused), a write-only, a missing and an invalid token. One database per backend is
shared by the token app (which migrates it) and the open app.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import orjson
import pytest
from fastapi.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send

from fhir_server.api.hot_path import HotPath
from fhir_server.app import create_app
from fhir_server.config import Settings
from tests.conftest import BACKENDS, database
from tests.security.test_token_auth_http import token_for

BASE = "http://testserver/fhir"
LOINC = "http://loinc.org"
#: never compared: produced per request
VOLATILE_HEADERS = {"date"}
#: per-response values of a Bundle: its id and meta.lastUpdated (the only Bundle bytes normalised), in
#: compact JSON, ``_pretty`` JSON and XML
_BUNDLE_HEAD = [
    re.compile(rb'^\{\s*"resourceType":\s*"Bundle",\s*"id":\s*"([^"]*)",\s*"meta":\s*\{\s*"lastUpdated":\s*"([^"]*)"'),
    re.compile(rb'^(?:<\?xml[^>]*>\s*)?<Bundle xmlns="http://hl7.org/fhir"><id value="([^"]*)"/><meta><lastUpdated value="([^"]*)"/>'),
]


# ----------------------------------------------------------------------------- forcing the route path


class FellThrough:
    """Wraps what ``HotPath`` falls through to, counting the requests it did not answer itself."""

    def __init__(self, inner: ASGIApp) -> None:
        self.inner = inner
        self.count = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.count += 1
        await self.inner(scope, receive, send)


def _splice(layer: ASGIApp, replace) -> ASGIApp:
    """A copy of the layer chain down to ``HotPath``, with ``HotPath`` replaced by ``replace(it)``."""
    if isinstance(layer, HotPath):
        return replace(layer)
    inner = getattr(layer, "app", None)
    assert inner is not None, f"no HotPath layer found under {layer!r}: FhirApp.outer changed shape"
    clone = copy.copy(layer)
    clone.app = _splice(inner, replace)
    return clone


class Switch:
    """``FhirApp.outer`` replacement: ``mode`` picks the chain with HotPath or the one without."""

    def __init__(self, outer: ASGIApp) -> None:
        self.probe: FellThrough | None = None

        def probed(fast: HotPath) -> ASGIApp:
            clone = copy.copy(fast)
            self.probe = clone.app = FellThrough(fast.app)
            return clone

        self.fast = _splice(outer, probed)
        self.routes = _splice(outer, lambda fast: fast.app)
        self.mode = "fast"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await (self.routes if self.mode == "routes" else self.fast)(scope, receive, send)


@dataclass
class Harness:
    client: TestClient
    switch: Switch
    mode: str  # "open" or "token"
    tokens: dict[str, str] = field(default_factory=dict)

    def headers(self, who: str | None, extra: dict[str, str] | None = None) -> dict[str, str]:
        h: dict[str, str] = {}
        if who == "bad":
            h["Authorization"] = "Bearer not-a-token"
        elif who is not None and self.mode == "token":
            h["Authorization"] = f"Bearer {self.tokens[who]}"
        return {**h, **(extra or {})}

    def both(
        self, method: str, url: str, who: str | None = "writer", *, headers: dict[str, str] | None = None, content: bytes | None = None
    ):
        """The same request through HotPath and through the routes: (fast, routes, fast path answered)."""
        h = self.headers(who, headers)
        assert self.switch.probe is not None
        self.switch.mode, before = "fast", self.switch.probe.count
        fast = self.client.request(method, url, headers=h, content=content)
        answered = self.switch.probe.count == before
        self.switch.mode = "routes"
        try:
            routes = self.client.request(method, url, headers=h, content=content)
        finally:
            self.switch.mode = "fast"
        return fast, routes, answered


# ----------------------------------------------------------------------------- the apps


@dataclass
class Servers:
    open: Harness
    token: Harness
    ids: dict[str, str]

    def harness(self, mode: str) -> Harness:
        return self.open if mode == "open" else self.token


TOKENS = {
    "writer": "system/*.cruds",
    "patients": "system/Patient.rs",  # Observation refused, its includes left out
    "writeonly": "system/Patient.c",
}


def _harness(app, mode: str) -> tuple[TestClient, Switch]:
    switch = Switch(app.outer)
    app.outer = switch
    return TestClient(app), switch


def _seed(h: Harness) -> dict[str, str]:
    def create(resource: dict[str, Any]) -> str:
        r = h.client.post(
            f"/fhir/{resource['resourceType']}",
            content=orjson.dumps(resource),
            headers=h.headers("writer", {"Content-Type": "application/fhir+json"}),
        )
        assert r.status_code == 201, r.text
        return r.json()["id"]

    ids = {"org": create({"resourceType": "Organization", "name": "Klinik Sehat"})}
    ids["patient"] = create(
        {
            "resourceType": "Patient",
            "name": [{"family": "Zeta"}],
            "gender": "female",
            "birthDate": "1980-01-02",
            "managingOrganization": {"reference": f"Organization/{ids['org']}"},
        }
    )
    for i in range(3):
        ids[f"p{i}"] = create({"resourceType": "Patient", "name": [{"family": "Paged"}], "gender": "male"})
    ids["obs"] = create(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "7917-8"}]},
            "subject": {"reference": f"Patient/{ids['patient']}"},
        }
    )
    ids["deleted"] = create({"resourceType": "Patient", "name": [{"family": "Gone"}]})
    r = h.client.delete(f"/fhir/Patient/{ids['deleted']}", headers=h.headers("writer"))
    assert r.status_code in (200, 204)
    return ids


@pytest.fixture(scope="module", params=BACKENDS)
def servers(request, tmp_path_factory) -> Iterator[Servers]:
    folder = tmp_path_factory.mktemp(f"hot-path-{request.param}")
    with database(request.param, folder) as url:
        token_app = create_app(Settings(database_url=url, auth="token", base_url=BASE, pool_size=2))
        token_client, token_switch = _harness(token_app, "token")
        with token_client:
            # the open app shares the database the token app migrated
            open_app = create_app(Settings(database_url=url, auth="none", base_url=BASE, migrate_on_start=False, pool_size=2))
            open_client, open_switch = _harness(open_app, "open")
            with open_client:
                token = Harness(
                    token_client, token_switch, "token", {name: token_for(token_client, scopes) for name, scopes in TOKENS.items()}
                )
                yield Servers(Harness(open_client, open_switch, "open"), token, _seed(token))


# ----------------------------------------------------------------------------- comparing


def _headers(response, drop: set[str] = frozenset()) -> list[tuple[str, str]]:
    return sorted((k.lower(), v) for k, v in response.headers.multi_items() if k.lower() not in VOLATILE_HEADERS and k.lower() not in drop)


def _body(response) -> bytes:
    body = response.content
    for head in _BUNDLE_HEAD:
        m = head.match(body)
        if m:
            start, end = m.span(1)
            body = body[:start] + b"ID" + body[end : m.start(2)] + b"TIME" + body[m.end(2) :]
    return body


def assert_identical(fast, routes, what: str) -> None:
    assert fast.status_code == routes.status_code, f"{what}: status {fast.status_code} (fast) != {routes.status_code} (routes)"
    assert _body(fast) == _body(routes), f"{what}: bodies differ\nfast:   {fast.content[:400]!r}\nroutes: {routes.content[:400]!r}"
    assert _headers(fast) == _headers(routes), f"{what}: headers differ\nfast:   {_headers(fast)}\nroutes: {_headers(routes)}"


# ----------------------------------------------------------------------------- reads by id

MODES_AND_CALLERS = [("open", None), ("token", "writer"), ("token", "patients"), ("token", "writeonly"), ("token", None), ("token", "bad")]


def _read_cases(ids: dict[str, str]) -> list[tuple[str, dict[str, str], bool]]:
    """(url, headers, whether the fast path is meant to answer it when the caller may read Patients)."""
    pid = ids["patient"]
    return [
        (f"/fhir/Patient/{pid}", {}, True),
        (f"/fhir/Patient/{pid}", {"Accept": "application/fhir+json"}, True),
        (f"/fhir/Patient/{pid}", {"Accept": "application/json"}, True),
        (f"/fhir/Patient/{pid}", {"Accept": "*/*"}, True),
        (f"/fhir/Patient/{pid}", {"Accept": "application/fhir+json; fhirVersion=4.0"}, True),
        (f"/fhir/Patient/{pid}", {"Accept": "application/fhir+xml;q=0.5, application/fhir+json"}, False),
        (f"/fhir/Patient/{pid}", {"Accept": ""}, True),
        (f"/fhir/Patient/{pid}?", {}, True),
        (f"/fhir/Patient/{pid}", {"Accept": "application/fhir+xml"}, False),
        (f"/fhir/Patient/{pid}", {"Accept": "text/csv"}, False),
        (f"/fhir/Patient/{pid}", {"If-None-Match": 'W/"1"'}, False),
        (f"/fhir/Patient/{pid}", {"If-None-Match": 'W/"7"'}, False),
        (f"/fhir/Patient/{pid}", {"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"}, False),
        ("/fhir/Patient/does-not-exist", {}, False),
        (f"/fhir/Patient/{ids['deleted']}", {}, False),
        ("/fhir/Patient/" + "x" * 64, {}, False),
        ("/fhir/Patient/" + "x" * 65, {}, False),
        ("/fhir/Patient/bad.id", {}, False),
        ("/fhir/Foo/123", {}, False),
        ("/fhir/AuditEvent/123", {}, False),
        (f"/fhir/Observation/{ids['obs']}", {}, True),
        (f"/fhir/Organization/{ids['org']}", {}, True),
    ]


@pytest.mark.parametrize("mode,who", MODES_AND_CALLERS)
def test_reads_by_id_answer_identically(servers, mode, who):
    h = servers.harness(mode)
    problems, answered_fast = [], 0
    for url, headers, hot in _read_cases(servers.ids):
        fast, routes, answered = h.both("GET", url, who, headers=headers)
        try:
            assert_identical(fast, routes, f"GET {url} {headers}")
        except AssertionError as exc:
            problems.append(str(exc))
        res_type = url.split("/")[2]
        may_read = mode == "open" or who == "writer" or (who == "patients" and res_type == "Patient")
        if hot and may_read:
            answered_fast += answered
            if not answered:
                problems.append(f"GET {url} {headers}: the fast path did not answer it (nothing was compared)")
    assert not problems, "\n".join(problems)


# ----------------------------------------------------------------------------- searches


def _search_cases(ids: dict[str, str]) -> list[tuple[str, dict[str, str], bool]]:
    pid = ids["patient"]
    return [
        ("/fhir/Patient?family=Zeta", {}, True),
        ("/fhir/Patient?family=Zeta", {"Accept": "application/fhir+json"}, True),
        (f"/fhir/Patient?_id={pid}&_revinclude=Observation:subject", {}, True),
        (f"/fhir/Patient?_id={pid}&_include=Patient:organization", {}, True),
        (f"/fhir/Patient?_id={pid}&_revinclude=*&_include=*", {}, True),
        ("/fhir/Patient?family=Paged&_count=1", {}, True),
        ("/fhir/Patient?family=Paged&_count=1&_total=accurate", {}, True),
        ("/fhir/Patient?_sort=-_lastUpdated&_count=2", {}, True),
        ("/fhir/Patient?_summary=count", {}, True),
        ("/fhir/Patient?_elements=name&family=Zeta", {}, True),
        ("/fhir/Patient?family=Zeta&unknown-param=1", {}, True),
        ("/fhir/Patient?family=Zeta&unknown-param=1", {"Prefer": "handling=strict"}, False),
        ("/fhir/Patient?birthdate=not-a-date", {}, False),
        ("/fhir/Patient?_count=abc", {}, False),
        ("/fhir/Patient?_cursor=garbage", {}, False),
        ("/fhir/Patient?_sort=nonsense", {}, False),
        ("/fhir/Patient?family=Zeta&_format=json", {}, False),
        ("/fhir/Patient?family=Zeta&_pretty=true", {}, False),
        ("/fhir/Patient?family=Zeta", {"Accept": "application/fhir+xml"}, False),
        ("/fhir/Patient?family=Zeta&name=%00", {}, False),
        ("/fhir/Foo?x=1", {}, False),
        ("/fhir/AuditEvent?_count=1&date=lt2001-01-01", {}, False),
        (f"/fhir/Observation?code={quote(LOINC + '|7917-8')}&_include=Observation:subject", {}, True),
        ("/fhir/Observation?subject:Patient.family=Zeta", {}, True),
        (f"/fhir/Patient?_has:Observation:subject:code={quote(LOINC + '|7917-8')}", {}, True),
        # query-string decoding: HotPath parses the query itself, the routes use Starlette's query_params
        ("/fhir/Patient?family=Z%C3%A9ta", {}, True),
        ("/fhir/Patient?family=%FF", {}, True),
        ("/fhir/Patient?family=%zz", {}, True),
        ("/fhir/Patient?family=", {}, True),
        ("/fhir/Patient?family", {}, True),
        ("/fhir/Patient?family=Ze+ta", {}, True),
        ("/fhir/Patient?family=Ze%2Bta", {}, True),
        ("/fhir/Patient?family=Zeta&&", {}, True),
        ("/fhir/Patient?family=Zeta;gender=male", {}, True),
        ("/fhir/Patient?family=Zeta&family=Paged", {}, True),
        (f"/fhir/Patient?_id={pid},{ids['p0']}", {}, True),
        ("/fhir/Patient?fam%69ly=Zeta", {}, True),
        ("/fhir/Patient?family=Zeta", {"Accept": "application/fhir+json; fhirVersion=4.0"}, True),
        ("/fhir/Patient?family=Zeta", {"Accept": "application/fhir+xml;q=0.5, application/fhir+json"}, False),
    ]


@pytest.mark.parametrize("mode,who", MODES_AND_CALLERS)
def test_searches_answer_identically(servers, mode, who):
    h = servers.harness(mode)
    problems = []
    for url, headers, hot in _search_cases(servers.ids):
        fast, routes, answered = h.both("GET", url, who, headers=headers)
        try:
            assert_identical(fast, routes, f"GET {url} {headers}")
        except AssertionError as exc:
            problems.append(str(exc))
        res_type = urlsplit(url).path.split("/")[2]
        allowed = mode == "open" or who == "writer" or (who == "patients" and res_type == "Patient" and "_has" not in url)
        if hot and allowed and fast.status_code == 200 and not answered:
            problems.append(f"GET {url} {headers}: the fast path did not answer it (nothing was compared)")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("mode,who", [("open", None), ("token", "writer"), ("token", "patients")])
def test_paging_links_answer_identically_page_after_page(servers, mode, who):
    h = servers.harness(mode)
    url = "/fhir/Patient?family=Paged&_count=1&_revinclude=Observation:subject"
    pages = 0
    while url:
        fast, routes, answered = h.both("GET", url, who)
        assert_identical(fast, routes, f"GET {url}")
        assert answered, f"GET {url}: the fast path did not answer it"
        nxt = [link["url"] for link in fast.json().get("link", []) if link["relation"] == "next"]
        url = nxt[0][len("http://testserver") :] if nxt else ""
        pages += 1
        assert pages <= 5
    assert pages == 3


# ----------------------------------------------------------------------------- creates

_STAMP = [
    (re.compile(rb'"lastUpdated":\s*"[^"]*"'), b'"lastUpdated":"TIME"'),
    (re.compile(rb'<lastUpdated value="[^"]*"/>'), b'<lastUpdated value="TIME"/>'),
]
#: compared for creates: everything but the server-assigned id, timestamps and Location
CREATE_VOLATILE = {"location", "last-modified", "etag"}


def _create_body(response) -> bytes:
    """The body with the created resource's id (from Location) and its lastUpdated replaced."""
    body = response.content
    location = response.headers.get("location")
    if location:
        created_id = location.split("/_history/")[0].rsplit("/", 1)[1]
        body = body.replace(created_id.encode(), b"ID")
    for pattern, replacement in _STAMP:
        body = pattern.sub(replacement, body)
    return body


def _create_cases() -> list[tuple[str, str, dict[str, str], bytes]]:
    patient = orjson.dumps({"resourceType": "Patient", "name": [{"family": "Created"}], "gender": "female"})
    json_ct = {"Content-Type": "application/fhir+json"}
    return [
        ("valid", "/fhir/Patient", json_ct, patient),
        ("return=minimal", "/fhir/Patient", {**json_ct, "Prefer": "return=minimal"}, patient),
        ("return=OperationOutcome", "/fhir/Patient", {**json_ct, "Prefer": "return=OperationOutcome"}, patient),
        ("Accept JSON", "/fhir/Patient", {**json_ct, "Accept": "application/fhir+json"}, patient),
        ("Accept XML", "/fhir/Patient", {**json_ct, "Accept": "application/fhir+xml"}, patient),
        (
            "XML body",
            "/fhir/Patient",
            {"Content-Type": "application/fhir+xml"},
            b'<Patient xmlns="http://hl7.org/fhir"><gender value="male"/></Patient>',
        ),
        ("not JSON", "/fhir/Patient", json_ct, b"{not json"),
        ("array", "/fhir/Patient", json_ct, b"[]"),
        ("wrong type", "/fhir/Patient", json_ct, b'{"resourceType":"Observation","status":"final","code":{"text":"x"}}'),
        ("invalid content", "/fhir/Patient", json_ct, b'{"resourceType":"Patient","gender":"sometimes"}'),
        ("unknown element", "/fhir/Patient", json_ct, b'{"resourceType":"Patient","colour":"blue"}'),
        ("unsupported media type", "/fhir/Patient", {"Content-Type": "text/plain"}, patient),
        ("unknown type", "/fhir/Foo", json_ct, b'{"resourceType":"Foo"}'),
        ("AuditEvent", "/fhir/AuditEvent", json_ct, b'{"resourceType":"AuditEvent"}'),
        ("Observation", "/fhir/Observation", json_ct, b'{"resourceType":"Observation","status":"final","code":{"text":"created"}}'),
    ]


@pytest.mark.parametrize("mode,who", MODES_AND_CALLERS)
def test_creates_answer_identically_but_for_id_time_and_location(servers, mode, who):
    h = servers.harness(mode)
    problems = []
    for name, url, headers, body in _create_cases():
        fast, routes, answered = h.both("POST", url, who, headers=headers, content=body)
        what = f"POST {url} ({name})"
        if fast.status_code != routes.status_code:
            problems.append(f"{what}: status {fast.status_code} (fast) != {routes.status_code} (routes)")
            continue
        if _create_body(fast) != _create_body(routes):
            problems.append(f"{what}: bodies differ\nfast:   {fast.content[:300]!r}\nroutes: {routes.content[:300]!r}")
        if _headers(fast, CREATE_VOLATILE) != _headers(routes, CREATE_VOLATILE):
            problems.append(
                f"{what}: headers differ\nfast:   {_headers(fast, CREATE_VOLATILE)}\nroutes: {_headers(routes, CREATE_VOLATILE)}"
            )
        if fast.status_code == 201:
            # the parts that do differ still have the same shape
            assert set(fast.headers) >= {"location", "etag", "last-modified"} and fast.headers["etag"] == routes.headers["etag"]
            assert fast.headers["location"] != routes.headers["location"]
        if name == "valid" and (mode == "open" or who == "writer") and not answered:
            problems.append(f"{what}: the fast path did not answer it (nothing was compared)")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("mode,who", [("open", None), ("token", "writer")])
def test_header_order_is_identical_too(servers, mode, who):
    """Byte-identical on the wire includes the order of the header lines (the other tests compare the
    headers as a multiset, so that this one alone reports an order difference)."""
    h = servers.harness(mode)
    problems = []
    for url in (f"/fhir/Patient/{servers.ids['patient']}", "/fhir/Patient?family=Zeta"):
        fast, routes, answered = h.both("GET", url, who)
        assert answered
        order_fast = [k.lower() for k in fast.headers if k.lower() not in VOLATILE_HEADERS]
        order_routes = [k.lower() for k in routes.headers if k.lower() not in VOLATILE_HEADERS]
        if order_fast != order_routes:
            problems.append(f"GET {url}: header order {order_fast} (fast) != {order_routes} (routes)")
    assert not problems, "\n".join(problems)


def test_the_route_path_is_really_forced(servers):
    """Sanity of the harness: through ``routes`` the HotPath layer is absent, through ``fast`` it answers."""
    h = servers.open
    fast, routes, answered = h.both("GET", f"/fhir/Patient/{servers.ids['patient']}", None)
    assert answered and fast.status_code == routes.status_code == 200
    assert not any(isinstance(layer, HotPath) for layer in _chain(h.switch.routes))
    assert any(isinstance(layer, HotPath) for layer in _chain(h.switch.fast))


def _chain(layer: ASGIApp) -> list[ASGIApp]:
    out = []
    while layer is not None and not isinstance(layer, FellThrough):
        out.append(layer)
        layer = getattr(layer, "app", None)
    return out
