"""HEAD is GET without the body (RFC 9110 §9.3.2; FHIR R4 http.html): wherever a GET is answered,
a HEAD is answered with the same status and headers (ETag, Content-Type, Content-Length) and no
body, errors included, with the GET's authorization and audit. ``$operations`` answered 405 to a
HEAD, and so did the console pages (while their ``Allow`` header listed HEAD). The one GET that is
not safe, the ``$export`` kick-off, runs its checks and answers 405 instead of starting a job.
"""

from __future__ import annotations

import orjson
import pytest
import sqlalchemy as sa

from fhir_server.storage.bulk_tables import export_jobs
from tests.security.test_audit_trail_http import _events
from tests.security.test_token_auth_http import auth, token_for

FHIR_JSON = {"Content-Type": "application/fhir+json"}
PATIENT = {"resourceType": "Patient", "gender": "female", "name": [{"family": "Aminah"}], "birthDate": "1990-06-05"}
#: headers that may differ between two answers to the same request
VOLATILE = {"date"}
ASYNC = {"Prefer": "respond-async"}


def _create(client) -> str:
    r = client.post("/fhir/Patient", content=orjson.dumps(PATIENT), headers=FHIR_JSON)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _headers(r) -> dict[str, str]:
    """The headers of ``r`` but the date, a cookie's value (a fresh CSRF token each time) kept by name."""
    out = {k: v for k, v in r.headers.items() if k not in VOLATILE}
    if "set-cookie" in out:
        out["set-cookie"] = out["set-cookie"].partition("=")[0]
    return out


def _same_but_the_body(get, head) -> None:
    assert head.status_code == get.status_code, head.headers
    assert head.content == b""
    assert _headers(head) == _headers(get), get.text


@pytest.mark.parametrize(
    "path",
    [
        "/fhir/$versions",
        "/fhir/$meta",
        "/fhir/Patient/{id}/$everything",
        "/fhir/Patient/{id}/$meta",
        "/fhir/Patient/{id}/$everything?_format=json&_pretty=true",
        "/fhir/ValueSet/$expand?url=https://fhir-server.id/ValueSet/dukcapil-status-kawin",
        "/fhir/$satusehat-status",
        "/fhir/Patient/{id}/$everything/",
        # errors: the GET's status and headers too
        "/fhir/Patient/$merge",
        "/fhir/$nope",
        "/fhir/Patient/nope/$everything",
        "/fhir/$export",  # without Prefer: respond-async, the kick-off's 400
        # outside the FHIR base
        "/console",
        "/docs",
    ],
)
def test_head_of_every_get_is_the_get_without_its_body(client, path):
    url = path.format(id=_create(client))
    client.cookies.clear()  # the console sets its CSRF cookie on each page a client has none for
    get = client.get(url)
    client.cookies.clear()
    _same_but_the_body(get, client.head(url))


def test_head_of_an_operation_that_changes_data_is_its_gets_405(client):
    r = client.head("/fhir/Patient/$merge")
    assert r.status_code == 405 and r.headers["allow"] == "POST" and r.content == b""


def _jobs(client) -> int:
    with client.app.state.fhir.db.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(export_jobs)).scalar_one()


@pytest.mark.parametrize("path", ["/fhir/$export", "/fhir/Patient/$export"])
def test_head_of_an_export_kickoff_starts_no_job(client, path):
    r = client.head(path, headers=ASYNC)
    assert r.status_code == 405 and r.content == b""
    assert r.headers["allow"] == "GET, POST"
    assert _jobs(client) == 0
    # the kick-off's own checks answer as for the GET
    assert client.head(path, params={"_since": "not-a-date"}, headers=ASYNC).status_code == 400
    assert _jobs(client) == 0


def test_allow_lists_head_where_get_is_answered(client):
    assert client.options("/fhir/$versions").headers["allow"] == "GET, HEAD, OPTIONS, POST"
    assert client.options("/fhir/Patient/x/$everything").headers["allow"] == "GET, HEAD, OPTIONS, POST"
    assert client.options("/fhir/$export").headers["allow"] == "GET, OPTIONS, POST"


def test_head_of_an_operation_in_a_batch_is_its_get_without_the_resource(client):
    pid = _create(client)
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"request": {"method": "HEAD", "url": f"Patient/{pid}/$everything"}},
            {"request": {"method": "GET", "url": f"Patient/{pid}/$everything"}},
            {"request": {"method": "HEAD", "url": "Patient/$merge"}},
        ],
    }
    r = client.post("/fhir", content=orjson.dumps(bundle), headers=FHIR_JSON)
    assert r.status_code == 200, r.text
    head, get, merge = r.json()["entry"]
    assert head["response"]["status"] == get["response"]["status"] == "200 OK"
    assert "resource" not in head and get["resource"]["resourceType"] == "Bundle"
    assert merge["response"]["status"].startswith("405")


def test_head_of_an_operation_is_audited_as_its_get(client):
    pid = _create(client)
    assert client.head(f"/fhir/Patient/{pid}/$everything").status_code == 200
    events = [e for e in _events(client, _count="100") if pid in orjson.dumps(e.get("entity", [])).decode()]
    assert [(e["subtype"][0]["code"], e["outcome"]) for e in events if e["subtype"][0]["code"] != "create"] == [("operation", "0")]


@pytest.mark.slow
def test_token_mode_head_is_authorized_as_the_get(secured):
    writer = token_for(secured, "system/*.cruds")
    observations_only = token_for(secured, "system/Observation.rs")
    r = secured.post("/fhir/Patient", content=orjson.dumps(PATIENT), headers=auth(writer))
    pid = r.json()["id"]
    for path in (
        f"/fhir/Patient/{pid}/$everything",
        f"/fhir/Patient/{pid}",
        "/fhir/Patient/$export",
        "/fhir/$versions",
        "/fhir/$satusehat-status",
    ):
        for headers in ({}, auth(observations_only), auth(writer)):
            get = secured.get(path, headers={**headers, **ASYNC})
            head = secured.head(path, headers={**headers, **ASYNC})
            if path.endswith("$export") and get.status_code == 202:
                assert head.status_code == 405 and head.content == b""
                continue
            _same_but_the_body(get, head)
            if not headers:
                assert head.status_code == 401 and head.headers["www-authenticate"]
    assert secured.head(f"/fhir/Patient/{pid}/$everything", headers=auth(observations_only)).status_code == 403
    assert secured.head("/fhir/Patient/$export", headers={**auth(observations_only), **ASYNC}).status_code == 403
