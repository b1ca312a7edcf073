"""The scope matrix: every way to reach data, for restricted SMART system tokens (FHIR_AUTH=token).

The spec the one authorization dispatcher is checked against. Three kinds of restricted token:

* one type read-only: ``system/Patient.rs`` (v2) and ``system/Patient.read`` (v1);
* one type write-only: ``system/Observation.c`` / ``system/Observation.cu`` (v2), ``system/Observation.write`` (v1);
* wide but without AuditEvent: ``system/*.cruds`` (v2) and ``system/*.*`` (v1).

For each way to reach data (read, vread, history, search with ``_include`` / ``_revinclude`` /
``_include:iterate`` / ``_has`` / chains, ``_type`` system search, batch and transaction Bundles,
``$everything``, the national imports and views, Bulk Data ``$export``) nothing outside the token's
scopes may be returned, written or exported. The rules asserted here:

* a resource of a type without ``read`` is never in a response body (included resources of such
  types are left out, the search itself still answers 200);
* included resources are computed as if resources of unreadable types did not exist, so
  ``_include:iterate`` never walks *through* an unreadable type to reach a readable one;
* selecting by another type's content (``_has``, chains) needs ``search`` on that type: 403 otherwise
  (a chain over a reference with several target types may instead run on the allowed targets only);
* a batch entry answers exactly what the same direct request answers;
* a transaction with one entry out of scope is refused whole (403) and writes nothing;
* an operation that writes or renders several types needs scopes on each of them;
* AuditEvent is readable only with an explicit ``system/AuditEvent.rs`` / ``.read`` and never writable;
* write-only tokens create, but never read, search or learn about existence (If-None-Exist,
  conditional references).

The app is built once per backend (module scope) and seeded once with an open writer token; tests
that write use fresh markers so they never depend on each other's order.
"""

from __future__ import annotations

import copy
import json
import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import orjson
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from fhir_server.app import create_app
from fhir_server.auth.clients import add_client
from fhir_server.auth.tokens import issue_access_token
from fhir_server.bulk.worker import ExportWorker
from fhir_server.config import Settings
from tests.bundles import entries
from tests.conftest import BACKENDS, database

BASE = "http://testserver/fhir"
FIXTURES = Path(__file__).resolve().parents[1] / "mappings" / "fixtures"
LOINC = "http://loinc.org"
HIV_CODE = "7917-8"  # HIV 1+2 Ab [Presence] in Serum: the sensitive lab result
HR_CODE = "8867-4"
NIK = "https://fhir.kemkes.go.id/id/nik"
MARKER = "https://example.org/scope-matrix/marker"
AMB = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}

WRITER = "system/*.cruds"
AUDIT_READER = "system/AuditEvent.rs"
READ_ONLY = ["system/Patient.rs", "system/Patient.read"]
WRITE_ONLY = ["system/Observation.c", "system/Observation.cu", "system/Observation.write"]
WIDE = ["system/*.cruds", "system/*.*"]
#: the resource types seeded (and the ones the generated tests pick a token type from)
COMMON_TYPES = [
    "Patient",
    "Encounter",
    "Observation",
    "Condition",
    "Coverage",
    "Organization",
    "Practitioner",
    "Group",
    "Procedure",
    "MedicationRequest",
    "AllergyIntolerance",
    "DiagnosticReport",
]


# ----------------------------------------------------------------------------- the scope oracle


def may(scopes: str, res_type: str, action: str) -> bool:
    """Whether ``scopes`` grant ``action`` (one of c r u d s) on ``res_type``: written from the SMART
    spec, independent of the server's parser (v1 read = rs, write = cud, * = cruds; AuditEvent only
    by explicit scope, and only r / s)."""
    for text in scopes.split():
        context, _, rest = text.partition("/")
        scope_type, _, perm = rest.partition(".")
        if context != "system" or "?" in perm:
            continue
        if res_type == "AuditEvent":
            if scope_type != "AuditEvent" or action not in "rs":
                continue
        elif scope_type not in (res_type, "*"):
            continue
        letters = {"read": "rs", "write": "cud", "*": "cruds"}.get(perm, perm)
        if action in letters:
            return True
    return False


# ----------------------------------------------------------------------------- the world


@dataclass
class World:
    client: TestClient
    backend: str
    export_dir: Path
    client_id: str = ""
    ids: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)

    def token(self, scopes: str) -> str:
        """A token carrying exactly ``scopes``. The writer's comes from the token endpoint; the others are
        signed with the server's own key for the one registered test client (the token endpoint's scrypt
        check costs ~0.4 s a token, and this file uses ~45 scope sets per backend)."""
        if scopes not in self.tokens:
            if not self.tokens:
                self.tokens[scopes] = issue_token(self.client, scopes)
            else:
                verifier = self.client.app.state.fhir.token_verifier()
                self.tokens[scopes], _ = issue_access_token(
                    verifier.key, client_id=self.client_id, scope=scopes, issuer=verifier.issuer or BASE, lifetime=900
                )
        return self.tokens[scopes]

    def headers(self, scopes: str, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(scopes)}", "Content-Type": "application/fhir+json", **extra}

    def get(self, url: str, scopes: str, **extra: str):
        return self.client.get(url, headers=self.headers(scopes, **extra))

    def post(self, url: str, scopes: str, body: Any, **extra: str):
        return self.client.post(url, content=orjson.dumps(body), headers=self.headers(scopes, **extra))

    def create(self, resource: dict[str, Any]) -> str:
        r = self.post(f"/fhir/{resource['resourceType']}", WRITER, resource)
        assert r.status_code == 201, r.text
        return r.json()["id"]

    def ref(self, name: str) -> str:
        return f"{self.type_of(name)}/{self.ids[name]}"

    def type_of(self, name: str) -> str:
        return SEEDED[name]


def issue_token(client: TestClient, scopes: str, *, requested: str | None = None) -> str:
    """An access token of a new client registered with ``scopes`` (asking for ``requested``, default all)."""
    with client.app.state.fhir.db.write() as conn:
        cid, secret = add_client(conn, name="scope matrix", scopes=scopes)
    r = client.post(
        "/fhir/auth/token",
        data={"grant_type": "client_credentials", "client_id": cid, "client_secret": secret, "scope": requested or scopes},
    )
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


#: seeded name -> resource type
SEEDED = {
    "org": "Organization",
    "clinic": "Organization",
    "practitioner": "Practitioner",
    "patient": "Patient",
    "patient2": "Patient",
    "group": "Group",
    "encounter": "Encounter",
    "hiv": "Observation",
    "location": "Location",
    "location_obs": "Observation",
    "hr2": "Observation",
    "condition": "Condition",
    "coverage": "Coverage",
    "allergy": "AllergyIntolerance",
    "medreq": "MedicationRequest",
    "procedure": "Procedure",
    "report": "DiagnosticReport",
    "deleted": "Patient",
}


def seed(w: World) -> None:
    ids = w.ids
    ids["org"] = w.create({"resourceType": "Organization", "name": "BPJS Kesehatan"})
    ids["clinic"] = w.create({"resourceType": "Organization", "name": "Klinik Sehat"})
    ids["practitioner"] = w.create({"resourceType": "Practitioner", "name": [{"family": "Budiman", "given": ["Dr"]}]})
    ids["patient"] = w.create(
        {
            "resourceType": "Patient",
            "name": [{"family": "Zeta", "given": ["Ani"]}],
            "gender": "female",
            "managingOrganization": {"reference": w.ref("clinic")},
        }
    )
    # a second version, for vread and history
    patient = w.get(f"/fhir/Patient/{ids['patient']}", WRITER).json()
    patient["birthDate"] = "1980-01-02"
    r = w.client.put(f"/fhir/Patient/{ids['patient']}", content=orjson.dumps(patient), headers=w.headers(WRITER))
    assert r.status_code == 200, r.text
    ids["patient2"] = w.create({"resourceType": "Patient", "name": [{"family": "Other"}], "gender": "male"})
    ids["group"] = w.create({"resourceType": "Group", "type": "person", "actual": True, "name": "Zeta"})
    ids["encounter"] = w.create(
        {
            "resourceType": "Encounter",
            "status": "finished",
            "class": AMB,
            "subject": {"reference": w.ref("patient")},
            "participant": [{"individual": {"reference": w.ref("practitioner")}}],
            "serviceProvider": {"reference": w.ref("clinic")},
        }
    )
    ids["hiv"] = w.create(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": LOINC, "code": HIV_CODE}]},
            "subject": {"reference": w.ref("patient")},
            "encounter": {"reference": w.ref("encounter")},
            "performer": [{"reference": w.ref("practitioner")}],
            "valueCodeableConcept": {"text": "Reactive"},
        }
    )
    ids["location"] = w.create({"resourceType": "Location", "name": "Zeta"})
    ids["location_obs"] = w.create(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": LOINC, "code": HR_CODE}]},
            "subject": {"reference": w.ref("location")},
        }
    )
    ids["hr2"] = w.create(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": LOINC, "code": HR_CODE}]},
            "subject": {"reference": w.ref("patient2")},
        }
    )
    ids["condition"] = w.create(
        {
            "resourceType": "Condition",
            "subject": {"reference": w.ref("patient")},
            "encounter": {"reference": w.ref("encounter")},
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "B20"}]},
        }
    )
    ids["coverage"] = w.create(
        {
            "resourceType": "Coverage",
            "status": "active",
            "beneficiary": {"reference": w.ref("patient")},
            "payor": [{"reference": w.ref("org")}],
        }
    )
    ids["allergy"] = w.create(
        {"resourceType": "AllergyIntolerance", "patient": {"reference": w.ref("patient")}, "code": {"text": "penicillin"}}
    )
    ids["medreq"] = w.create(
        {
            "resourceType": "MedicationRequest",
            "status": "active",
            "intent": "order",
            "medicationCodeableConcept": {"text": "ARV"},
            "subject": {"reference": w.ref("patient")},
            "encounter": {"reference": w.ref("encounter")},
            "requester": {"reference": w.ref("practitioner")},
        }
    )
    ids["procedure"] = w.create(
        {
            "resourceType": "Procedure",
            "status": "completed",
            "subject": {"reference": w.ref("patient")},
            "encounter": {"reference": w.ref("encounter")},
        }
    )
    ids["report"] = w.create(
        {
            "resourceType": "DiagnosticReport",
            "status": "final",
            "code": {"text": "HIV panel"},
            "subject": {"reference": w.ref("patient")},
            "result": [{"reference": w.ref("hiv")}],
        }
    )
    ids["deleted"] = w.create({"resourceType": "Patient", "name": [{"family": "Gone"}]})
    assert w.client.delete(f"/fhir/Patient/{ids['deleted']}", headers=w.headers(WRITER)).status_code in (200, 204)
    # the national data, the way production fills it: Patient (Dukcapil), Coverage + Organizations (BPJS), SEP Encounter
    for url, name in (
        ("/fhir/Patient/$import-dukcapil", "dukcapil_call_nik.json"),
        ("/fhir/$import-bpjs-peserta", "bpjs_peserta.json"),
        ("/fhir/Encounter/$import-sep", "sep_response.json"),
    ):
        r = w.client.post(
            url,
            content=(FIXTURES / name).read_bytes(),
            headers={"Authorization": f"Bearer {w.token(WRITER)}", "Content-Type": "application/json"},
        )
        assert r.status_code == 200, r.text
    ids["bpjs_patient"] = _only_id(w, f"Patient?identifier={quote(NIK + '|3204154506900003')}")
    ids["bpjs_coverage"] = _only_id(w, "Coverage?identifier=" + quote("https://fhir-server.id/id/bpjs-kartu|0001234500001"))
    ids["sep_encounter"] = _only_id(w, "Encounter?identifier=" + quote("https://fhir-server.id/id/bpjs-sep|0000R0010324V000001"))


def _only_id(w: World, query: str) -> str:
    entries = w.get(f"/fhir/{query}", WRITER).json()["entry"]
    assert len(entries) == 1, query
    return entries[0]["resource"]["id"]


@pytest.fixture(scope="module", params=BACKENDS)
def world(request, tmp_path_factory) -> Iterator[World]:
    folder = tmp_path_factory.mktemp(f"scope-matrix-{request.param}")
    with database(request.param, folder) as url:
        export_dir = folder / "export"
        settings_ = Settings(
            database_url=url,
            auth="token",
            base_url=BASE,
            export_dir=str(export_dir),
            export_worker=False,
            export_poll_interval=0.05,
            audit_flush_interval=0.05,
            pool_size=3,  # the suite shares one PostgreSQL server
        )
        app = create_app(settings_)
        with TestClient(app) as client:
            with app.state.fhir.db.write() as conn:
                cid, _ = add_client(conn, name="scope matrix tokens", scopes="system/*.cruds system/AuditEvent.rs")
            w = World(client, request.param, export_dir, cid)
            w.token(WRITER)  # from the token endpoint
            seed(w)
            yield w


# ----------------------------------------------------------------------------- helpers


def types_in(response) -> list[str]:
    """The resource types of a Bundle's entries (search-mode outcome entries left out)."""
    body = response.json() if not isinstance(response, dict) else response
    return [
        e["resource"]["resourceType"] for e in body.get("entry", []) if "resource" in e and (e.get("search") or {}).get("mode") != "outcome"
    ]


def refs_in(body: dict[str, Any]) -> set[str]:
    return {
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in body.get("entry", [])
        if "resource" in e and (e.get("search") or {}).get("mode") != "outcome"
    }


def assert_forbidden(r, what: str = "") -> None:
    assert r.status_code == 403, f"{what}: expected 403, got {r.status_code}: {r.text[:300]}"
    body = r.json()
    assert body["resourceType"] == "OperationOutcome", what
    assert body["issue"][0]["code"] == "forbidden", what


def assert_only_readable(scopes: str, body: dict[str, Any], what: str = "") -> None:
    """Every resource in the Bundle (nested Bundles of batch responses too) is of a type the scopes can read."""
    for e in body.get("entry", []):
        res = e.get("resource")
        if res is None or (e.get("search") or {}).get("mode") == "outcome":
            continue
        if res["resourceType"] == "Bundle":
            assert_only_readable(scopes, res, what)
            continue
        if res["resourceType"] == "OperationOutcome" and "response" in e:
            continue
        assert may(scopes, res["resourceType"], "r"), f"{what}: {res['resourceType']}/{res.get('id')} leaked to {scopes!r}"


def batch(w: World, scopes: str, urls: list[str], kind: str = "batch"):
    bundle = {"resourceType": "Bundle", "type": kind, "entry": [{"request": {"method": "GET", "url": u}} for u in urls]}
    return w.post("/fhir", scopes, bundle)


def writes_so_far(w: World) -> tuple[int, int]:
    """(rows, highest pk) of ``resource_versions``: every create, update or delete adds a row."""
    with w.client.app.state.fhir.db.engine.connect() as conn:
        return tuple(conn.execute(sa.text("SELECT count(*), coalesce(max(pk), 0) FROM resource_versions")).one())


def marked(w: World, res_type: str, marker: str) -> int:
    return len(entries(w.get(f"/fhir/{res_type}?identifier={quote(MARKER + '|' + marker)}", WRITER).json()))


def new_marker() -> str:
    return uuid.uuid4().hex


def comparable(status: int, body: Any) -> Any:
    """What must be equal between a direct response and a batch entry: the status, and the resource
    (a searchset: its type, total and entries' fullUrl / mode / type; an OperationOutcome: its issue
    codes; Bundle ids, times and links are per-response)."""
    if not isinstance(body, dict):
        return status, None
    if body.get("resourceType") == "Bundle":
        entries = [
            (e.get("fullUrl"), (e.get("search") or {}).get("mode"), (e.get("resource") or {}).get("resourceType"))
            for e in body.get("entry", [])
        ]
        return status, body.get("type"), body.get("total"), entries
    if body.get("resourceType") == "OperationOutcome":
        return status, "OperationOutcome", [i.get("code") for i in body.get("issue", [])]
    return status, body


def entry_status(entry: dict[str, Any]) -> int:
    return int(entry["response"]["status"].split()[0])


# ============================================================================= read, vread, history, search


@pytest.mark.parametrize("scopes", READ_ONLY)
def test_read_only_token_reaches_its_type_and_nothing_else(world, scopes):
    w, ids = world, world.ids
    pid = ids["patient"]
    # what it may do
    assert w.get(f"/fhir/Patient/{pid}", scopes).status_code == 200
    assert w.get(f"/fhir/Patient/{pid}/_history/1", scopes).status_code == 200
    assert w.get(f"/fhir/Patient/{pid}/_history", scopes).status_code == 200
    assert w.get("/fhir/Patient/_history", scopes).status_code == 200
    assert w.get("/fhir/Patient?family=Zeta", scopes).status_code == 200
    assert w.get(f"/fhir/Patient/{pid}/Patient", scopes).status_code == 200  # a search of its type in a compartment
    assert w.get(f"/fhir/Patient/{pid}/*?_type=Patient", scopes).status_code == 200
    # everything else
    for name in ("hiv", "encounter", "condition", "coverage", "org", "practitioner"):
        t, i = w.type_of(name), ids[name]
        for url in (
            f"/fhir/{t}/{i}",
            f"/fhir/{t}/{i}/_history/1",
            f"/fhir/{t}/{i}/_history",
            f"/fhir/{t}/_history",
            f"/fhir/{t}",
            f"/fhir/{t}?_id={i}",
            f"/fhir/Patient/{pid}/{t}",
            f"/fhir/Patient/{pid}/*?_type={t}",
        ):
            r = w.get(url, scopes)
            assert_forbidden(r, url)
            assert i not in r.text
    assert_forbidden(w.get(f"/fhir/Patient/{pid}/*", scopes), "every type of a compartment is a system-level search")
    assert_forbidden(
        w.client.post(
            "/fhir/Observation/_search",
            content=f"_id={ids['hiv']}",
            headers={**w.headers(scopes), "Content-Type": "application/x-www-form-urlencoded"},
        )
    )
    assert_forbidden(w.get("/fhir/_history", scopes), "system history needs search on every type")
    # and no writes on its own type
    assert_forbidden(w.post("/fhir/Patient", scopes, {"resourceType": "Patient"}))
    patient = w.get(f"/fhir/Patient/{pid}", scopes).json()
    assert_forbidden(w.client.put(f"/fhir/Patient/{pid}", content=orjson.dumps(patient), headers=w.headers(scopes)))
    assert_forbidden(w.client.delete(f"/fhir/Patient/{ids['patient2']}", headers=w.headers(scopes)))


@pytest.mark.parametrize("scopes", READ_ONLY)
def test_includes_and_revincludes_of_unreadable_types_are_left_out(world, scopes):
    w, pid = world, world.ids["patient"]
    queries = [
        f"Patient?_id={pid}&_revinclude=Observation:subject&_revinclude=Encounter:subject&_revinclude=Condition:subject"
        f"&_revinclude=Coverage:beneficiary&_revinclude=DiagnosticReport:subject&_include=Patient:organization",
        f"Patient?_id={pid}&_revinclude=*&_include=*",
        f"Patient?_id={pid}&_revinclude=Observation:subject&_include:iterate=Observation:performer",
        f"Patient?_id={pid}&_revinclude=*&_include:iterate=*&_revinclude:iterate=*",
        "Patient?family=Zeta&_revinclude:iterate=Encounter:subject&_revinclude:iterate=Observation:encounter",
    ]
    for q in queries:
        r = w.get(f"/fhir/{q}", scopes)
        assert r.status_code == 200, (q, r.text)
        assert f"Patient/{pid}" in refs_in(r.json()), q
        assert set(types_in(r)) == {"Patient"}, (q, types_in(r))
        assert HIV_CODE not in r.text and world.ids["hiv"] not in r.text, q
    # POST _search: the same
    form = urlencode([("_id", pid), ("_revinclude", "*"), ("_include", "*")])
    r = w.client.post(
        "/fhir/Patient/_search", content=form, headers={**w.headers(scopes), "Content-Type": "application/x-www-form-urlencoded"}
    )
    assert r.status_code == 200 and set(types_in(r)) == {"Patient"}, types_in(r)


@pytest.mark.parametrize(
    "scopes",
    [
        "system/Patient.rs system/Practitioner.rs system/Organization.rs",
        "system/Patient.read system/Practitioner.read system/Organization.read",
    ],
)
def test_include_iterate_never_walks_through_an_unreadable_type(world, scopes):
    """The Practitioner who performed the HIV test and BPJS (the Coverage payor) are readable types, but
    reachable from the Patient only through an Observation / a Coverage the token cannot read: including
    them would tell the client the patient has such an Observation / Coverage. Includes are computed as if
    resources of unreadable types did not exist."""
    w, ids = world, world.ids
    pid = ids["patient"]
    for q, hidden in (
        (
            f"Patient?_id={pid}&_revinclude=Observation:subject&_include:iterate=Observation:performer",
            f"Practitioner/{ids['practitioner']}",
        ),
        (f"Patient?_id={pid}&_revinclude=Coverage:beneficiary&_include:iterate=Coverage:payor", f"Organization/{ids['org']}"),
        (f"Patient?_id={pid}&_revinclude:iterate=*&_include:iterate=*", f"Practitioner/{ids['practitioner']}"),
    ):
        r = w.get(f"/fhir/{q}", scopes)
        assert r.status_code == 200, r.text
        found = refs_in(r.json())
        assert f"Patient/{pid}" in found
        assert hidden not in found, f"{q}: {hidden} reached through an unreadable type"
        assert_only_readable(scopes, r.json(), q)


# ============================================================================= _has and chains

HAS_QUERIES = [
    f"Patient?_has:Observation:subject:code={quote(LOINC + '|' + HIV_CODE)}",
    f"Patient?_has:Observation:patient:code={HIV_CODE}",
    "Patient?_has:Condition:subject:code=B20",
    "Patient?_has:Encounter:subject:_has:Condition:encounter:code=B20",
    "Patient?family=Zeta&_has:Coverage:beneficiary:payor=Organization/{org}",
]


@pytest.mark.parametrize("scopes", READ_ONLY)
@pytest.mark.parametrize("query", HAS_QUERIES)
def test_has_on_a_type_the_token_cannot_search_is_forbidden(world, scopes, query):
    """It must not select patients by their Observations / Conditions / Coverages."""
    w = world
    q = query.format(org=w.ids["org"])
    assert_forbidden(w.get(f"/fhir/{q}", scopes), q)
    res_type, _, params = q.partition("?")
    r = w.client.post(
        f"/fhir/{res_type}/_search", content=params, headers={**w.headers(scopes), "Content-Type": "application/x-www-form-urlencoded"}
    )
    assert_forbidden(r, f"POST _search {q}")


def test_has_and_chains_select_exactly_the_seeded_match_when_every_type_is_searchable(world):
    """Controls: each query above is understood (not ignored with a warning) and selects the one seeded match."""
    w = world
    r = w.get(f"/fhir/{HAS_QUERIES[0]}", "system/Patient.rs system/Observation.rs")
    assert r.status_code == 200 and refs_in(r.json()) == {f"Patient/{w.ids['patient']}"}, r.text
    for q in HAS_QUERIES:
        r = w.get(f"/fhir/{q.format(org=w.ids['org'])}", "system/*.rs")
        assert r.status_code == 200 and refs_in(r.json()) == {f"Patient/{w.ids['patient']}"}, (q, r.text)
    for q in CHAIN_QUERIES:
        r = w.get(f"/fhir/{q}", "system/*.rs")
        assert r.status_code == 200 and refs_in(r.json()) == {f"Observation/{w.ids['hiv']}"}, (q, r.text)


CHAIN_QUERIES = [
    "Observation?subject:Patient.name=Zeta",
    "Observation?patient.family=Zeta",
    "Observation?encounter.status=finished",
    "Observation?encounter:Encounter.subject:Patient.family=Zeta",
    f"Observation?performer:Practitioner.name=Budiman&code={HIV_CODE}",
]


@pytest.mark.parametrize("scopes", ["system/Observation.rs", "system/Observation.read"])
@pytest.mark.parametrize("query", CHAIN_QUERIES)
def test_chain_into_a_type_the_token_cannot_search_is_forbidden(world, scopes, query):
    w = world
    assert_forbidden(w.get(f"/fhir/{query}", scopes), query)
    res_type, _, params = query.partition("?")
    r = w.client.post(
        f"/fhir/{res_type}/_search", content=params, headers={**w.headers(scopes), "Content-Type": "application/x-www-form-urlencoded"}
    )
    assert_forbidden(r, f"POST _search {query}")
    assert w.get(f"/fhir/Observation?code={HIV_CODE}", scopes).status_code == 200  # the token does search Observations


@pytest.mark.parametrize("scopes", ["system/Observation.rs system/Patient.rs", "system/Observation.read system/Patient.read"])
def test_chain_through_an_unsearchable_intermediate_type_is_forbidden(world, scopes):
    """Patient and Observation are searchable, the Encounter in the middle is not."""
    assert_forbidden(world.get("/fhir/Observation?encounter:Encounter.subject:Patient.family=Zeta", scopes))
    r = world.get("/fhir/Observation?subject:Patient.family=Zeta", scopes)  # positive control
    assert r.status_code == 200 and refs_in(r.json()) == {f"Observation/{world.ids['hiv']}"}, r.text


@pytest.mark.parametrize(
    "scopes,allowed_subjects",
    [
        ("system/Observation.rs system/Patient.rs", {"Patient"}),
        ("system/Observation.read system/Patient.read", {"Patient"}),
        ("system/Observation.rs", set()),
    ],
)
def test_chain_over_several_target_types_sees_only_allowed_targets(world, scopes, allowed_subjects):
    """``Observation.subject`` targets Patient, Group, Device, Location; ``name`` is a parameter of Patient
    and Location. ``subject.name=Zeta`` matches the HIV Observation (its Patient is Zeta) and one whose
    subject is the Location "Zeta". It may run on the allowed targets only, with the result it would have
    if only those existed (or be refused)."""
    w, ids = world, world.ids
    control = w.get("/fhir/Observation?subject.name=Zeta", "system/*.rs")
    assert refs_in(control.json()) == {f"Observation/{ids['hiv']}", f"Observation/{ids['location_obs']}"}
    r = w.get("/fhir/Observation?subject.name=Zeta", scopes)
    if r.status_code == 403:
        assert_forbidden(r)
        return
    assert r.status_code == 200, r.text
    expected = {f"Observation/{ids['hiv']}"} if "Patient" in allowed_subjects else set()
    assert refs_in(r.json()) == expected, "Observations selected through an unsearchable subject type"


# ============================================================================= _type system search


@pytest.mark.parametrize("scopes", READ_ONLY)
def test_type_system_search(world, scopes):
    w, pid = world, world.ids["patient"]
    for q in (
        "_type=Patient,Observation",
        "_type=Observation",
        "_type=Patient&_type=Coverage",
        "",
        f"_type=Patient&_has:Observation:subject:code={HIV_CODE}",
        "_type=Patient&organization.name=Klinik",
        "_type=AuditEvent",
    ):
        assert_forbidden(w.get(f"/fhir?{q}" if q else "/fhir", scopes), q)
    for q in (
        f"_type=Patient&_id={pid}&_revinclude=*",
        f"_type=Patient&_id={pid}&_revinclude=Observation:subject",
        f"_type=Patient&_id={pid}&_revinclude=*&_include:iterate=*&_revinclude:iterate=*",
    ):
        r = w.get(f"/fhir?{q}", scopes)
        assert r.status_code == 200, (q, r.text)
        assert set(types_in(r)) == {"Patient"}, (q, types_in(r))


# ============================================================================= batch and transaction


def batch_urls(w: World) -> list[str]:
    ids = w.ids
    pid = ids["patient"]
    return [
        f"Patient/{pid}",
        f"Patient/{pid}/_history/1",
        f"Patient/{ids['deleted']}",
        "Patient/does-not-exist",
        f"Observation/{ids['hiv']}",
        f"Observation/{ids['hiv']}/_history/1",
        f"Encounter/{ids['encounter']}",
        f"Coverage/{ids['coverage']}",
        "Patient?family=Zeta",
        f"Patient?_id={pid}&_revinclude=*&_include=*",
        f"Patient?_id={pid}&_revinclude=Observation:subject&_revinclude=Condition:subject&_include=Patient:organization",
        f"Patient?_id={pid}&_revinclude=Observation:subject&_include:iterate=Observation:performer",
        f"Patient?_id={pid}&_revinclude:iterate=*&_include:iterate=*",
        f"Patient?_has:Observation:subject:code={HIV_CODE}",
        "Observation?subject:Patient.name=Zeta",
        f"Observation?code={HIV_CODE}&_include=Observation:subject",
        f"Observation?code={HIV_CODE}&_include=*&_revinclude=*",
        f"Encounter?_id={ids['encounter']}&_revinclude=*",
        "AuditEvent",
    ]


@pytest.mark.parametrize("scopes", READ_ONLY + WRITE_ONLY + WIDE + ["system/Patient.rs system/Practitioner.rs system/Organization.rs"])
def test_batch_get_entries_answer_what_the_direct_requests_answer(world, scopes):
    w = world
    urls = batch_urls(w)
    r = batch(w, scopes, urls)
    assert r.status_code == 200, r.text
    entries = r.json()["entry"]
    assert len(entries) == len(urls)
    mismatches = []
    for url, entry in zip(urls, entries, strict=True):
        direct = w.get(f"/fhir/{url}", scopes)
        got = comparable(entry_status(entry), entry.get("resource") or (entry["response"].get("outcome")))
        want = comparable(direct.status_code, direct.json())
        if got != want:
            mismatches.append(f"{url}: batch {got} != direct {want}")
        if direct.status_code == 403:
            assert "resource" not in entry or entry["resource"]["resourceType"] == "OperationOutcome", url
        try:
            assert_only_readable(scopes, {"entry": [entry]}, url)
        except AssertionError as exc:
            mismatches.append(f"{url}: LEAK {exc}".splitlines()[0])
    assert not mismatches, "\n".join(mismatches)


@pytest.mark.parametrize("scopes", READ_ONLY)
def test_batch_refuses_entries_on_types_the_token_cannot_reach(world, scopes):
    w, ids = world, world.ids
    urls = [
        f"Observation/{ids['hiv']}",
        f"Observation?code={HIV_CODE}",
        f"Condition?subject=Patient/{ids['patient']}",
        f"Patient?_has:Observation:subject:code={HIV_CODE}",
        "Observation?subject:Patient.name=Zeta",
    ]
    r = batch(w, scopes, urls)
    assert r.status_code == 200
    for url, entry in zip(urls, r.json()["entry"], strict=True):
        assert entry_status(entry) == 403, (url, entry)
        assert "resource" not in entry, url
    assert ids["hiv"] not in r.text


def test_batch_writes_are_authorized_per_entry(world):
    w = world
    m = new_marker()
    scopes = "system/Observation.c"
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"resource": _observation(m, w.ids["patient"]), "request": {"method": "POST", "url": "Observation"}},
            {
                "resource": {
                    "resourceType": "Condition",
                    "identifier": [{"system": MARKER, "value": m}],
                    "subject": {"reference": w.ref("patient")},
                },
                "request": {"method": "POST", "url": "Condition"},
            },
            {"resource": {"resourceType": "AuditEvent"}, "request": {"method": "POST", "url": "AuditEvent"}},
        ],
    }
    r = w.post("/fhir", scopes, bundle)
    assert r.status_code == 200, r.text
    statuses = [entry_status(e) for e in r.json()["entry"]]
    assert statuses[0] == 201 and statuses[1] == 403 and statuses[2] in (403, 405), statuses
    assert marked(w, "Observation", m) == 1 and marked(w, "Condition", m) == 0


def _observation(marker: str, patient_id: str | None = None, code: str = HR_CODE) -> dict[str, Any]:
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "identifier": [{"system": MARKER, "value": marker}],
        "code": {"coding": [{"system": LOINC, "code": code}]},
    }
    if patient_id:
        obs["subject"] = {"reference": f"Patient/{patient_id}"}
    return obs


@pytest.mark.parametrize(
    "scopes,entries,written_types",
    [
        # read-only Patient: a read and a create of its own type
        (
            "system/Patient.rs",
            lambda w, m: [
                ("GET", f"Patient/{w.ids['patient']}", None),
                ("POST", "Patient", {"resourceType": "Patient", "identifier": [{"system": MARKER, "value": m}]}),
            ],
            ["Patient"],
        ),
        (
            "system/Patient.read",
            lambda w, m: [("POST", "Patient", {"resourceType": "Patient", "identifier": [{"system": MARKER, "value": m}]})],
            ["Patient"],
        ),
        # write-only Observation: its create and one of another type
        (
            "system/Observation.c",
            lambda w, m: [
                ("POST", "Observation", _observation(m)),
                (
                    "POST",
                    "Condition",
                    {
                        "resourceType": "Condition",
                        "identifier": [{"system": MARKER, "value": m}],
                        "subject": {"reference": f"Patient/{w.ids['patient']}"},
                    },
                ),
            ],
            ["Observation", "Condition"],
        ),
        (
            "system/Observation.write",
            lambda w, m: [
                ("POST", "Observation", _observation(m)),
                (
                    "PUT",
                    f"Patient/{w.ids['patient2']}",
                    {"resourceType": "Patient", "id": w.ids["patient2"], "identifier": [{"system": MARKER, "value": m}]},
                ),
            ],
            ["Observation", "Patient"],
        ),
        # write-only Observation: its create and a read it may not do
        (
            "system/Observation.cu",
            lambda w, m: [("POST", "Observation", _observation(m)), ("GET", f"Observation/{w.ids['hiv']}", None)],
            ["Observation"],
        ),
        (
            "system/Observation.c",
            lambda w, m: [("POST", "Observation", _observation(m)), ("GET", f"Patient?_id={w.ids['patient']}", None)],
            ["Observation"],
        ),
        # wide: anything but AuditEvent
        (
            "system/*.cruds",
            lambda w, m: [("POST", "Observation", _observation(m)), ("POST", "AuditEvent", {"resourceType": "AuditEvent"})],
            ["Observation"],
        ),
        ("system/*.*", lambda w, m: [("POST", "Observation", _observation(m)), ("GET", "AuditEvent", None)], ["Observation"]),
    ],
)
def test_transaction_with_an_entry_out_of_scope_is_refused_whole(world, scopes, entries, written_types):
    w = world
    m = new_marker()
    before = writes_so_far(w)
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"request": {"method": method, "url": url}, **({"resource": res} if res else {})} for method, url, res in entries(w, m)],
    }
    r = w.post("/fhir", scopes, bundle)
    assert_forbidden(r, "transaction")
    for t in written_types:
        assert marked(w, t, m) == 0, f"{t} written by a refused transaction"
    assert writes_so_far(w) == before


@pytest.mark.parametrize("kind", ["transaction", "batch"])
@pytest.mark.parametrize("scopes", ["system/Observation.c", "system/Observation.write"])
def test_conditional_reference_needs_search_on_its_target_type(world, kind, scopes):
    """A conditional reference (``Patient?identifier=...``) is resolved by searching Patients: whether the
    Observation is stored (or 412 / 404) tells a write-only Observation client whether such a patient exists."""
    w = world
    m = new_marker()
    obs = _observation(m)
    obs["subject"] = {"reference": f"Patient?identifier={NIK}|3204154506900003"}
    bundle = {"resourceType": "Bundle", "type": kind, "entry": [{"resource": obs, "request": {"method": "POST", "url": "Observation"}}]}
    r = w.post("/fhir", scopes, bundle)
    if kind == "transaction":
        assert_forbidden(r, "transaction with a conditional reference to Patient")
    else:
        assert r.status_code == 200
        assert entry_status(r.json()["entry"][0]) == 403, r.json()["entry"][0]
    assert marked(w, "Observation", m) == 0


# ============================================================================= write-only tokens


@pytest.mark.parametrize("scopes", WRITE_ONLY)
def test_write_only_token_creates_but_never_reads(world, scopes):
    w, ids = world, world.ids
    m = new_marker()
    created = w.post("/fhir/Observation", scopes, _observation(m, ids["patient"]))
    assert created.status_code == 201, created.text
    oid = created.json()["id"]
    for url in (
        f"/fhir/Observation/{oid}",
        f"/fhir/Observation/{oid}/_history/1",
        f"/fhir/Observation/{oid}/_history",
        f"/fhir/Observation/{ids['hiv']}",
        "/fhir/Observation",
        f"/fhir/Observation?code={HIV_CODE}",
        "/fhir/Observation/_history",
        f"/fhir?_type=Observation&code={HIV_CODE}",
        "/fhir/_history",
        f"/fhir/Patient/{ids['patient']}",
        f"/fhir/Patient/{ids['patient']}/$everything",
        f"/fhir/Encounter/{ids['encounter']}/$everything",
        f"/fhir/Observation/{ids['hiv']}/$meta",
    ):
        r = w.get(url, scopes)
        assert_forbidden(r, url)
        assert HIV_CODE not in r.text and ids["hiv"] not in r.text
    r = w.client.post(
        "/fhir/Observation/_search",
        content=f"code={HIV_CODE}",
        headers={**w.headers(scopes), "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert_forbidden(r, "POST _search")
    # batch GETs: refused entry by entry
    r = batch(
        w,
        scopes,
        [f"Observation/{oid}", f"Observation/{ids['hiv']}", f"Observation?code={HIV_CODE}", f"Observation/{ids['hiv']}/_history/1"],
    )
    assert r.status_code == 200
    assert [entry_status(e) for e in r.json()["entry"]] == [403] * 4
    assert ids["hiv"] not in r.text and HIV_CODE not in r.text


@pytest.mark.parametrize("scopes", WRITE_ONLY)
def test_write_only_token_cannot_probe_existence_with_conditional_interactions(world, scopes):
    """If-None-Exist answers 200 (exists) or 201 (created): a search. Without ``s`` it is 403, nothing written;
    the same for conditional update and delete."""
    w, ids = world, world.ids
    m = new_marker()
    hiv_condition = f"code={HIV_CODE}&subject=Patient/{ids['patient']}"
    for condition in (hiv_condition, f"identifier={MARKER}|{m}"):
        r = w.client.post(
            "/fhir/Observation",
            content=orjson.dumps(_observation(m, ids["patient"])),
            headers={**w.headers(scopes), "If-None-Exist": condition},
        )
        assert_forbidden(r, f"If-None-Exist: {condition}")
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": _observation(m, ids["patient"]), "request": {"method": "POST", "url": "Observation", "ifNoneExist": hiv_condition}}
        ],
    }
    assert_forbidden(w.post("/fhir", scopes, bundle), "transaction with ifNoneExist")
    bundle["type"] = "batch"
    r = w.post("/fhir", scopes, bundle)
    assert r.status_code == 200 and entry_status(r.json()["entry"][0]) == 403, r.text
    r = w.client.put(f"/fhir/Observation?{hiv_condition}", content=orjson.dumps(_observation(m, ids["patient"])), headers=w.headers(scopes))
    assert_forbidden(r, "conditional update")
    assert_forbidden(w.client.delete(f"/fhir/Observation?{hiv_condition}", headers=w.headers(scopes)), "conditional delete")
    assert marked(w, "Observation", m) == 0
    assert w.get(f"/fhir/Observation/{ids['hiv']}", WRITER).json()["meta"]["versionId"] == "1"


# ============================================================================= $everything


@pytest.mark.parametrize(
    "scopes,compartment,expected_types",
    [
        ("system/Patient.rs", "Patient", {"Patient"}),
        ("system/Patient.read", "Patient", {"Patient"}),
        ("system/Patient.rs system/Observation.rs", "Patient", {"Patient", "Observation"}),
        ("system/Encounter.rs", "Encounter", {"Encounter"}),
        ("system/Encounter.read system/Condition.read", "Encounter", {"Encounter", "Condition"}),
        ("system/*.cruds", "Patient", None),
        ("system/*.*", "Encounter", None),
    ],
)
def test_everything_leaves_out_members_of_unreadable_types(world, scopes, compartment, expected_types):
    w = world
    focal = w.ids["patient" if compartment == "Patient" else "encounter"]
    r = w.get(f"/fhir/{compartment}/{focal}/$everything", scopes)
    assert r.status_code == 200, r.text
    found = set(types_in(r))
    assert f"{compartment}/{focal}" in refs_in(r.json())
    assert "AuditEvent" not in found
    assert_only_readable(scopes, r.json(), "$everything")
    if expected_types is not None:
        assert found == expected_types, found
    else:
        assert "Observation" in found  # the wide token does see the compartment
    # the other compartment is refused without read + search on its type
    other = "Encounter" if compartment == "Patient" else "Patient"
    other_id = w.ids["encounter" if other == "Encounter" else "patient"]
    if not may(scopes, other, "r"):
        assert_forbidden(w.get(f"/fhir/{other}/{other_id}/$everything", scopes))


# ============================================================================= national imports and views


def _payload(name: str) -> Any:
    """A fixture payload made unique, so that an import that should have been refused cannot be a no-op."""
    data = json.loads((FIXTURES / name).read_text())
    n = random.randrange(10**5, 10**6)
    if name == "sep_response.json":
        data["response"]["sep"]["noSep"] = f"0000R0010324V{n}"
    elif name == "pcare_kunjungan.json":
        data["noKunjungan"] = f"0000U0010324Y{n}"
    elif name == "bpjs_peserta.json":
        data["response"]["peserta"]["noKartu"] = f"0001234{n}"
    elif name == "dukcapil_call_nik.json":
        data["content"][0]["NIK"] = int(f"320415450690{n % 10000:04d}")
    return data


@pytest.mark.parametrize(
    "url,fixture_name,scopes",
    [
        ("/fhir/Encounter/$import-sep", "sep_response.json", "system/Encounter.cruds"),  # also writes a Condition
        ("/fhir/Encounter/$import-sep", "sep_response.json", "system/Encounter.*"),
        ("/fhir/Encounter/$import-sep", "sep_response.json", "system/Encounter.cu system/Condition.cu"),  # upserts: no s
        ("/fhir/Encounter/$import-pcare", "pcare_kunjungan.json", "system/Encounter.cruds"),  # Conditions, Observations
        ("/fhir/Encounter/$import-pcare", "pcare_kunjungan.json", "system/Encounter.write system/Condition.write"),
        ("/fhir/Patient/$import-dukcapil", "dukcapil_call_nik.json", "system/Patient.cu"),  # a conditional upsert: needs s
        ("/fhir/Patient/$import-dukcapil", "dukcapil_call_nik.json", "system/Patient.write"),
        ("/fhir/$import-bpjs-peserta", "bpjs_peserta.json", "system/Coverage.cruds"),  # Patient, Organizations too
        ("/fhir/$import-bpjs-peserta", "bpjs_peserta.json", "system/Coverage.cruds system/Patient.cruds"),
    ],
)
def test_national_import_needs_scopes_on_every_type_it_writes(world, url, fixture_name, scopes):
    w = world
    before = writes_so_far(w)
    r = w.client.post(
        url,
        content=orjson.dumps(_payload(fixture_name)),
        headers={"Authorization": f"Bearer {w.token(scopes)}", "Content-Type": "application/json"},
    )
    assert_forbidden(r, f"{url} with {scopes}")
    assert writes_so_far(w) == before, "a refused import wrote resources"


def test_national_import_with_scopes_on_every_type_it_writes_is_allowed(world):
    """Positive control: the SEP import writes (conditionally upserts) an Encounter and a Condition."""
    w = world
    scopes = "system/Encounter.cruds system/Condition.cruds"
    r = w.client.post(
        "/fhir/Encounter/$import-sep",
        content=orjson.dumps(_payload("sep_response.json")),
        headers={"Authorization": f"Bearer {w.token(scopes)}", "Content-Type": "application/json"},
    )
    assert r.status_code == 200, r.text
    assert_only_readable(scopes, r.json(), "import response")


@pytest.mark.parametrize(
    "view,focal,scopes",
    [
        ("$bpjs-peserta", "bpjs_coverage", "system/Coverage.rs"),  # renders the beneficiary Patient (name, NIK)
        ("$bpjs-peserta", "bpjs_coverage", "system/Coverage.read"),
        ("$bpjs-peserta", "bpjs_coverage", "system/Coverage.rs system/Organization.rs"),
        ("$sep", "sep_encounter", "system/Encounter.rs"),  # renders the diagnosis Condition
        ("$sep", "sep_encounter", "system/Encounter.read system/Patient.read"),
        ("$sep?view=response", "sep_encounter", "system/Encounter.rs"),
        ("$dukcapil", "bpjs_patient", "system/Encounter.rs"),  # not even the focal type
        ("$bpjs-peserta", "bpjs_coverage", "system/Observation.c"),
    ],
)
def test_national_view_needs_read_on_every_type_it_renders(world, view, focal, scopes):
    w = world
    res_type = {"bpjs_coverage": "Coverage", "sep_encounter": "Encounter", "bpjs_patient": "Patient"}[focal]
    r = w.get(f"/fhir/{res_type}/{w.ids[focal]}/{view}", scopes)
    assert_forbidden(r, f"{view} with {scopes}")
    assert "SITI" not in r.text and "I10" not in r.text


@pytest.mark.parametrize(
    "view,focal,scopes",
    [
        ("$dukcapil", "bpjs_patient", "system/Patient.rs"),  # the Dukcapil Patient links nothing
        ("$bpjs-peserta", "bpjs_coverage", "system/*.rs"),
        ("$sep", "sep_encounter", "system/*.read"),
    ],
)
def test_national_view_with_read_on_what_it_renders_is_allowed(world, view, focal, scopes):
    w = world
    res_type = {"bpjs_coverage": "Coverage", "sep_encounter": "Encounter", "bpjs_patient": "Patient"}[focal]
    r = w.get(f"/fhir/{res_type}/{w.ids[focal]}/{view}", scopes)
    assert r.status_code == 200, r.text


# ============================================================================= bulk export


def _wait(w: World, url: str, token: str, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while True:
        r = w.client.get(url, headers={"Authorization": f"Bearer {token}"})
        if r.status_code != 202 or time.monotonic() > deadline:
            return r
        time.sleep(0.05)


def test_bulk_export_gives_only_files_of_readable_types(world):
    w = world
    async_ = {"Prefer": "respond-async", "Accept": "application/fhir+json"}
    worker = ExportWorker(w.client.app.state.fhir.db, w.export_dir, poll_interval=0.05, owner="scope-matrix").start()
    try:
        # one client registered wide; its tokens may be narrowed, and the job stays the client's
        with w.client.app.state.fhir.db.write() as conn:
            cid, secret = add_client(conn, name="export client", scopes="system/*.cruds")

        def narrowed(scope: str) -> str:
            r = w.client.post(
                "/fhir/auth/token", data={"grant_type": "client_credentials", "client_id": cid, "client_secret": secret, "scope": scope}
            )
            assert r.status_code == 200, r.text
            return r.json()["access_token"]

        wide, patients_only = narrowed("system/*.cruds"), narrowed("system/Patient.rs")
        kick = w.client.get("/fhir/$export", headers={"Authorization": f"Bearer {wide}", **async_})
        assert kick.status_code == 202, kick.text
        status_url = kick.headers["Content-Location"]
        done = _wait(w, status_url, wide)
        assert done.status_code == 200, done.text
        files = {o["type"]: o["url"] for o in done.json()["output"]}
        assert {"Patient", "Observation", "Condition"} <= set(files), files
        assert "AuditEvent" not in files
        assert w.client.get(files["Observation"], headers={"Authorization": f"Bearer {wide}"}).status_code == 200

        # the same client with a Patient-only token: other types' files are refused, the manifest lists
        # Patient only (or is refused)
        problems = []
        for t in ("Observation", "Condition", "Encounter", "Coverage"):
            r = w.client.get(files[t], headers={"Authorization": f"Bearer {patients_only}"})
            if r.status_code != 403 or HIV_CODE in r.text:
                problems.append(f"{t}.ndjson downloaded with a Patient-only token: {r.status_code} ({len(r.content)} bytes)")
        manifest = w.client.get(status_url, headers={"Authorization": f"Bearer {patients_only}"})
        if manifest.status_code == 200:
            listed = sorted({o["type"] for o in manifest.json()["output"]} - {"Patient"})
            if listed:
                problems.append(f"the manifest lists unreadable types to a Patient-only token: {listed}")
        elif manifest.status_code != 403:
            problems.append(f"manifest: {manifest.status_code}")
        assert w.client.get(files["Patient"], headers={"Authorization": f"Bearer {patients_only}"}).status_code in (200, 403)
        assert not problems, "\n".join(problems)

        # kick-offs: what a restricted token may start
        for scopes in READ_ONLY:
            h = {**w.headers(scopes), **async_}
            assert_forbidden(w.client.get("/fhir/$export", headers=h), "system export")
            assert_forbidden(w.client.get("/fhir/Patient/$export?_type=Observation", headers=h), "Observation export")
            k = w.client.get("/fhir/Patient/$export", headers=h)
            assert k.status_code == 202, k.text
            m = _wait(w, k.headers["Content-Location"], w.token(scopes))
            assert [o["type"] for o in m.json()["output"]] == ["Patient"], m.json()
        for scopes in WRITE_ONLY:
            h = {**w.headers(scopes), **async_}
            for url in (
                "/fhir/$export",
                "/fhir/Patient/$export",
                "/fhir/$export?_type=Observation",
                "/fhir/Patient/$export?_type=Observation",
            ):
                assert_forbidden(w.client.get(url, headers=h), f"{url} with {scopes}")
        for scopes in WIDE:
            h = {**w.headers(scopes), **async_}
            for url in ("/fhir/$export?_type=AuditEvent", "/fhir/$export?_type=Patient,AuditEvent"):
                assert_forbidden(w.client.get(url, headers=h), f"{url} with {scopes}")
    finally:
        worker.stop()


# ============================================================================= AuditEvent


def _an_audit_event(w: World) -> str:
    deadline = time.monotonic() + 5
    while True:
        r = w.get("/fhir/AuditEvent?_count=5", AUDIT_READER)
        assert r.status_code == 200, r.text
        if r.json().get("entry") or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert r.json()["entry"], "the audit trail is empty: nothing to protect"
    return r.json()["entry"][0]["resource"]["id"]


@pytest.mark.parametrize("scopes", [*WIDE, "system/*.read", "system/*.rs"])
def test_audit_events_need_an_explicit_scope_to_be_read(world, scopes):
    w, pid = world, world.ids["patient"]
    event_id = _an_audit_event(w)
    assert w.get(f"/fhir/AuditEvent/{event_id}", AUDIT_READER).status_code == 200  # control
    for url in (
        f"/fhir/AuditEvent/{event_id}",
        "/fhir/AuditEvent",
        f"/fhir/AuditEvent?entity=Patient/{pid}",
        "/fhir?_type=AuditEvent",
        "/fhir?_type=Patient,AuditEvent",
    ):
        assert_forbidden(w.get(url, scopes), url)
    for url in (
        f"/fhir/Patient?_id={pid}&_revinclude=*&_revinclude=AuditEvent:entity&_revinclude=AuditEvent:patient",
        f"/fhir/Patient?_id={pid}&_revinclude:iterate=*&_include:iterate=*",
        f"/fhir/Patient/{pid}/$everything",
        f"/fhir/Encounter/{w.ids['encounter']}/$everything",
        f"/fhir?_type=Patient&_id={pid}&_revinclude=*",
        "/fhir/_history?_count=1000",
        "/fhir/Patient/_history",
    ):
        r = w.get(url, scopes)
        assert r.status_code == 200, (url, r.text)
        assert "AuditEvent" not in types_in(r), url
    r = batch(w, scopes, [f"AuditEvent/{event_id}", "AuditEvent", f"Patient?_id={pid}&_revinclude=*"])
    assert r.status_code == 200
    statuses = [entry_status(e) for e in r.json()["entry"]]
    assert statuses[:2] == [403, 403], statuses
    assert "AuditEvent" not in types_in(r.json()["entry"][2]["resource"])
    # selecting by AuditEvents is searching them
    url = f"/fhir/Patient?_has:AuditEvent:entity:_id={event_id}"
    assert_forbidden(w.get(url, scopes), url)


@pytest.mark.parametrize(
    "scopes", ["system/*.cruds system/AuditEvent.rs", "system/*.* system/AuditEvent.read", "system/AuditEvent.cruds", "system/AuditEvent.*"]
)
def test_no_scope_can_write_audit_events(world, scopes):
    w = world
    event_id = _an_audit_event(w)
    event = w.get(f"/fhir/AuditEvent/{event_id}", AUDIT_READER).json()
    new_id = f"forged-{new_marker()[:12]}"
    forged = {**copy.deepcopy(event), "id": new_id}
    forged.pop("meta", None)
    attempts = [
        w.post("/fhir/AuditEvent", scopes, forged),
        w.client.put(f"/fhir/AuditEvent/{new_id}", content=orjson.dumps(forged), headers=w.headers(scopes)),
        w.client.put(f"/fhir/AuditEvent/{event_id}", content=orjson.dumps(event), headers=w.headers(scopes)),
        w.client.delete(f"/fhir/AuditEvent/{event_id}", headers=w.headers(scopes)),
        w.client.patch(
            f"/fhir/AuditEvent/{event_id}",
            content=b'[{"op":"remove","path":"/agent"}]',
            headers={**w.headers(scopes), "Content-Type": "application/json-patch+json"},
        ),
    ]
    for r in attempts:
        assert r.status_code in (403, 405), r.text
    tx = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": forged, "request": {"method": "PUT", "url": f"AuditEvent/{new_id}"}}],
    }
    assert w.post("/fhir", scopes, tx).status_code in (403, 405)
    tx["type"] = "batch"
    r = w.post("/fhir", scopes, tx)
    assert r.status_code == 200 and entry_status(r.json()["entry"][0]) in (403, 405), r.text
    assert w.get(f"/fhir/AuditEvent/{new_id}", AUDIT_READER).status_code == 404
    assert w.get(f"/fhir/AuditEvent/{event_id}", AUDIT_READER).json() == event


def test_batch_reads_audit_events_like_direct_reads_with_an_explicit_scope(world):
    w = world
    scopes = "system/AuditEvent.rs"
    event_id = _an_audit_event(w)
    urls = [f"AuditEvent/{event_id}", "AuditEvent?_count=1"]
    r = batch(w, scopes, urls)
    assert r.status_code == 200
    for url, entry in zip(urls, r.json()["entry"], strict=True):
        direct = w.get(f"/fhir/{url}", scopes)
        assert entry_status(entry) == direct.status_code == 200, (url, entry)
        if "_count" not in url:
            assert entry["resource"] == direct.json()


# ============================================================================= generated: one-type tokens


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
)
@given(res_type=st.sampled_from(COMMON_TYPES), other=st.sampled_from(COMMON_TYPES), v1=st.booleans())
def test_generated_one_type_readers_never_see_another_type(world, res_type, other, v1):
    """For a token reading one type (picked from the common R4 types): a ``_revinclude=*``/``_include=*``
    search, a ``_type`` search, a batch of GETs of every seeded resource and ``$everything`` never
    return an entry of another type."""
    w = world
    scopes = f"system/{res_type}.read" if v1 else f"system/{res_type}.rs"
    ids_of_type = [i for name, i in w.ids.items() if name in SEEDED and SEEDED[name] == res_type and name != "deleted"]
    some = ids_of_type[0]
    for url in (
        f"/fhir/{res_type}?_revinclude=*&_include=*",
        f"/fhir/{res_type}?_id={some}&_revinclude:iterate=*&_include:iterate=*",
        f"/fhir?_type={res_type}&_revinclude=*&_include=*",
    ):
        r = w.get(url, scopes)
        assert r.status_code == 200, (url, r.text)
        assert set(types_in(r)) <= {res_type}, (url, types_in(r))
        if "_id=" in url:
            assert f"{res_type}/{some}" in refs_in(r.json()), url
    if other != res_type:
        assert_forbidden(w.get(f"/fhir?_type={res_type},{other}", scopes))
        assert_forbidden(w.get(f"/fhir/{other}", scopes))
    # a batch of GETs: every seeded resource, and the same searches
    names = [n for n in SEEDED if n != "deleted"]
    urls = [f"{SEEDED[n]}/{w.ids[n]}" for n in names] + [
        f"{res_type}?_revinclude=*&_include=*",
        f"{res_type}?_revinclude:iterate=*&_include:iterate=*",
    ]
    r = batch(w, scopes, urls)
    assert r.status_code == 200
    for url, entry in zip(urls, r.json()["entry"], strict=True):
        target = url.split("/")[0].split("?")[0]
        status = entry_status(entry)
        if target == res_type:
            assert status == 200, (url, entry)
        else:
            assert status == 403 and "resource" not in entry, (url, entry)
    assert_only_readable(scopes, r.json(), f"batch for {scopes}")
    # $everything
    for compartment, name in (("Patient", "patient"), ("Encounter", "encounter")):
        r = w.get(f"/fhir/{compartment}/{w.ids[name]}/$everything", scopes)
        if compartment == res_type:
            assert r.status_code == 200 and set(types_in(r)) == {res_type}, (compartment, types_in(r))
        else:
            assert_forbidden(r, f"{compartment}/$everything with {scopes}")


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
)
@given(res_type=st.sampled_from(COMMON_TYPES), letters=st.sampled_from(["c", "cu", "cud", "write"]))
def test_generated_write_only_tokens_read_nothing(world, res_type, letters):
    w = world
    scopes = f"system/{res_type}.{letters}"
    some = next(i for name, i in w.ids.items() if name in SEEDED and SEEDED[name] == res_type and name != "deleted")
    for url in (
        f"/fhir/{res_type}/{some}",
        f"/fhir/{res_type}",
        f"/fhir/{res_type}?_id={some}&_revinclude=*",
        f"/fhir?_type={res_type}",
        f"/fhir/{res_type}/{some}/_history",
        f"/fhir/{res_type}/_history",
    ):
        assert_forbidden(w.get(url, scopes), url)
    r = batch(w, scopes, [f"{res_type}/{some}", f"{res_type}?_id={some}"])
    assert [entry_status(e) for e in r.json()["entry"]] == [403, 403]
    assert some not in r.text
