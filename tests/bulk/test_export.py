"""Bulk Data $export over HTTP: kick-off, polling, manifest, files, filters, levels, cancel, errors."""

from __future__ import annotations

import json
import time

import sqlalchemy as sa

from fhir_server.bulk import jobs
from fhir_server.storage.tables import resources
from fhir_server.timeutil import now_us, to_instant
from tests.bulk.conftest import ASYNC, BASE, wait_done


def _create(client, resource: dict) -> str:
    resp = client.post(f"/fhir/{resource['resourceType']}", json=resource)
    assert resp.status_code == 201, resp.text
    return resp.json()["id"]


def _patient(client, family: str) -> str:
    return _create(client, {"resourceType": "Patient", "name": [{"family": family}]})


def _observation(client, patient_id: str | None, code: str = "8867-4") -> str:
    obs = {"resourceType": "Observation", "status": "final", "code": {"coding": [{"system": "http://loinc.org", "code": code}]}}
    if patient_id:
        obs["subject"] = {"reference": f"Patient/{patient_id}"}
    return _create(client, obs)


def _stored(client, res_type: str) -> dict[str, bytes]:
    with client.app.state.fhir.db.read() as conn:
        rows = conn.execute(
            sa.select(resources.c.res_id, resources.c.body).where(resources.c.res_type == res_type, resources.c.deleted == sa.false())
        )
        return {r.res_id: bytes(r.body) for r in rows}


def _kickoff(client, path: str, **kw):
    return client.get(path, headers={**ASYNC, **kw.pop("headers", {})}, **kw)


def _export(client, path: str, **kw) -> dict:
    resp = _kickoff(client, path, **kw)
    assert resp.status_code == 202, resp.text
    done = wait_done(client, resp.headers["Content-Location"])
    assert done.status_code == 200, done.text
    assert done.headers["content-type"].startswith("application/json")
    return done.json()


def _files(client, manifest: dict) -> dict[str, list[bytes]]:
    out = {}
    for item in manifest["output"]:
        resp = client.get(item["url"])
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("application/fhir+ndjson")
        lines = resp.content.split(b"\n")
        assert lines[-1] == b""  # every line ends with a newline
        out[item["type"]] = lines[:-1]
        assert len(out[item["type"]]) == item["count"]
    return out


def test_system_export_round_trip(bulk, worker, export_dir):
    p1, p2 = _patient(bulk, "Satu"), _patient(bulk, "Dua")
    for pid in (p1, p1, p2):
        _observation(bulk, pid)
    _create(bulk, {"resourceType": "Organization", "name": "RS Sehat"})

    resp = _kickoff(bulk, "/fhir/$export")
    assert resp.status_code == 202
    location = resp.headers["Content-Location"]
    job_id = location.rsplit("/", 1)[1]
    assert location == f"{BASE}/$export-status/{job_id}"
    assert resp.json()["resourceType"] == "OperationOutcome"

    done = wait_done(bulk, location)
    assert done.status_code == 200, done.text
    manifest = done.json()
    assert manifest["request"] == f"{BASE}/$export"
    assert manifest["requiresAccessToken"] is False
    assert manifest["error"] == []
    assert manifest["transactionTime"].endswith("+00:00")
    counts = {o["type"]: o["count"] for o in manifest["output"]}
    assert counts == {"Patient": 2, "Observation": 3, "Organization": 1}
    for o in manifest["output"]:
        assert o["url"] == f"{BASE}/$export-file/{job_id}/{o['type']}.ndjson"
        assert (export_dir / job_id / f"{o['type']}.ndjson").is_file()

    files = _files(bulk, manifest)
    for res_type, lines in files.items():
        stored = _stored(bulk, res_type)
        # exactly the stored bytes, one resource per line, each once
        assert sorted(lines) == sorted(stored.values())
        for line in lines:
            assert json.loads(line)["resourceType"] == res_type


def test_type_and_since_filter(bulk, worker):
    old_patient = _patient(bulk, "Lama")
    _observation(bulk, old_patient)
    time.sleep(0.01)
    since = to_instant(now_us())
    time.sleep(0.01)
    new_patient = _patient(bulk, "Baru")
    _create(bulk, {"resourceType": "Organization", "name": "Klinik"})

    manifest = _export(bulk, "/fhir/$export", params={"_type": "Patient,Observation"})
    assert {o["type"]: o["count"] for o in manifest["output"]} == {"Patient": 2, "Observation": 1}
    assert "_type=Patient%2CObservation" in manifest["request"]

    manifest = _export(bulk, "/fhir/$export", params={"_since": since})
    assert {o["type"]: o["count"] for o in manifest["output"]} == {"Patient": 1, "Organization": 1}
    files = _files(bulk, manifest)
    assert json.loads(files["Patient"][0])["id"] == new_patient

    manifest = _export(bulk, "/fhir/$export", params=[("_type", "Observation"), ("_type", "Organization"), ("_since", since)])
    assert {o["type"]: o["count"] for o in manifest["output"]} == {"Organization": 1}


def test_patient_level_is_the_patient_compartments(bulk, worker):
    p1, p2 = _patient(bulk, "A"), _patient(bulk, "B")
    o1, o2 = _observation(bulk, p1), _observation(bulk, p2)
    _observation(bulk, None)  # no subject: in no compartment
    _create(bulk, {"resourceType": "Organization", "name": "Puskesmas"})
    enc = _create(
        bulk,
        {
            "resourceType": "Encounter",
            "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": f"Patient/{p1}"},
        },
    )

    manifest = _export(bulk, "/fhir/Patient/$export")
    assert manifest["request"] == f"{BASE}/Patient/$export"
    files = _files(bulk, manifest)
    ids = {t: {json.loads(line)["id"] for line in lines} for t, lines in files.items()}
    assert ids == {"Patient": {p1, p2}, "Observation": {o1, o2}, "Encounter": {enc}}

    manifest = _export(bulk, "/fhir/Patient/$export", params={"_type": "Observation"})
    assert {o["type"]: o["count"] for o in manifest["output"]} == {"Observation": 2}


def test_group_level_is_the_members_compartments(bulk, worker):
    p1, p2, p3, p4 = (_patient(bulk, n) for n in ("A", "B", "C", "D"))
    obs = {pid: _observation(bulk, pid) for pid in (p1, p2, p3, p4)}
    group = _create(
        bulk,
        {
            "resourceType": "Group",
            "type": "person",
            "actual": True,
            "member": [
                {"entity": {"reference": f"Patient/{p1}"}},
                {"entity": {"reference": f"{BASE}/Patient/{p2}"}},
                {"entity": {"reference": f"Patient/{p3}"}, "inactive": True},
            ],
        },
    )
    manifest = _export(bulk, f"/fhir/Group/{group}/$export")
    assert manifest["request"] == f"{BASE}/Group/{group}/$export"
    files = _files(bulk, manifest)
    ids = {t: {json.loads(line)["id"] for line in lines} for t, lines in files.items()}
    assert ids["Patient"] == {p1, p2}
    assert ids["Observation"] == {obs[p1], obs[p2]}
    assert set(ids) <= {"Patient", "Observation", "Group"}

    assert _kickoff(bulk, "/fhir/Group/nope/$export").status_code == 404


def test_post_kickoff_with_parameters(bulk, worker):
    _patient(bulk, "Post")
    _create(bulk, {"resourceType": "Organization", "name": "RS"})
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "_type", "valueString": "Organization"},
            {"name": "_outputFormat", "valueString": "application/ndjson"},
        ],
    }
    resp = bulk.post("/fhir/$export", json=body, headers=ASYNC)
    assert resp.status_code == 202, resp.text
    done = wait_done(bulk, resp.headers["Content-Location"])
    assert [o["type"] for o in done.json()["output"]] == ["Organization"]


def test_kickoff_errors(bulk):
    assert bulk.get("/fhir/$export").status_code == 400  # no Prefer: respond-async
    resp = bulk.get("/fhir/Patient/$export", headers={"Prefer": "return=minimal"})
    assert resp.status_code == 400 and resp.json()["resourceType"] == "OperationOutcome"
    assert "respond-async" in resp.json()["issue"][0]["diagnostics"]
    for fmt in ("application/fhir+ndjson", "application/ndjson", "ndjson"):
        assert _kickoff(bulk, "/fhir/$export", params={"_outputFormat": fmt}).status_code == 202
    resp = _kickoff(bulk, "/fhir/$export", params={"_outputFormat": "text/csv"})
    assert resp.status_code == 400 and "_outputFormat" in resp.text
    # the IG's examples write the + unescaped, which a URL decodes to a space; case and parameters
    for raw in ("application/fhir+ndjson", "Application/FHIR+NDJSON", "application/fhir%2Bndjson; charset=utf-8"):
        assert bulk.get(f"/fhir/$export?_outputFormat={raw}", headers=ASYNC).status_code == 202, raw
    assert _kickoff(bulk, "/fhir/$export", params={"_since": "yesterday"}).status_code == 400
    assert _kickoff(bulk, "/fhir/$export", params={"_type": "Nope"}).status_code == 400
    assert _kickoff(bulk, "/fhir/Patient/$export", params={"_type": "Organization"}).status_code == 400
    assert _kickoff(bulk, "/fhir/$export", params={"_until": "2026-01-01"}).status_code == 400
    assert _kickoff(bulk, "/fhir/$export", params={"_typeFilter": "x"}).status_code == 400  # not a query
    lenient = {"Prefer": "respond-async, handling=lenient"}
    assert _kickoff(bulk, "/fhir/$export", params={"_until": "x", "_type": "Patient,Nope"}, headers=lenient).status_code == 202
    assert bulk.get("/fhir/$export-status/00000000-0000-0000-0000-000000000000").status_code == 404
    assert bulk.get("/fhir/$export-status/not-a-job").status_code == 404
    assert bulk.delete("/fhir/$export-status/00000000-0000-0000-0000-000000000000").status_code == 404


def test_status_is_202_with_progress_until_a_worker_runs_it(bulk):
    resp = _kickoff(bulk, "/fhir/$export")
    status = bulk.get(resp.headers["Content-Location"])
    assert status.status_code == 202
    assert status.headers["X-Progress"] == "queued"
    assert status.headers["Retry-After"].isdigit()


def test_delete_cancels_a_queued_or_complete_job_and_removes_files(bulk, worker, export_dir):
    _patient(bulk, "Hapus")
    manifest_resp = _kickoff(bulk, "/fhir/$export")
    location = manifest_resp.headers["Content-Location"]
    done = wait_done(bulk, location)
    assert done.status_code == 200
    url = done.json()["output"][0]["url"]
    job_id = location.rsplit("/", 1)[1]
    assert (export_dir / job_id).is_dir()
    resp = bulk.delete(location)
    assert resp.status_code == 202
    assert bulk.get(location).status_code == 404
    assert bulk.get(url).status_code == 404
    assert not (export_dir / job_id).exists()
    assert bulk.delete(location).status_code == 404  # already cancelled

    worker.stop()
    queued = _kickoff(bulk, "/fhir/$export").headers["Content-Location"]
    assert bulk.delete(queued).status_code == 202
    assert bulk.get(queued).status_code == 404
    job = jobs.get_job(bulk.app.state.fhir.db, queued.rsplit("/", 1)[1])
    assert job.status == "cancelled"
    assert jobs.claim_next(bulk.app.state.fhir.db, "late-worker", 5.0) is None  # never run


def test_file_route_refuses_other_names(bulk, worker):
    _patient(bulk, "F")
    resp = _kickoff(bulk, "/fhir/$export")
    location = resp.headers["Content-Location"]
    assert wait_done(bulk, location).status_code == 200
    job_id = location.rsplit("/", 1)[1]
    assert bulk.get(f"/fhir/$export-file/{job_id}/Patient.ndjson").status_code == 200
    assert bulk.get(f"/fhir/$export-file/{job_id}/Observation.ndjson").status_code == 404
    assert bulk.get(f"/fhir/$export-file/{job_id}/..%2F..%2Fetc.ndjson").status_code == 404
    assert bulk.get(f"/fhir/$export-file/{job_id}/Patient.json").status_code == 404


def test_failed_export_is_an_operation_outcome_and_the_worker_carries_on(bulk, worker):
    pid = _patient(bulk, "G")
    group = _create(
        bulk, {"resourceType": "Group", "type": "person", "actual": True, "member": [{"entity": {"reference": f"Patient/{pid}"}}]}
    )
    worker.stop()
    location = _kickoff(bulk, f"/fhir/Group/{group}/$export").headers["Content-Location"]
    assert bulk.delete(f"/fhir/Group/{group}").status_code in (200, 204)
    worker.start()
    failed = wait_done(bulk, location)
    assert failed.status_code == 500
    assert failed.json()["resourceType"] == "OperationOutcome"
    assert f"Group/{group}" in failed.json()["issue"][0]["diagnostics"]
    manifest = _export(bulk, "/fhir/$export", params={"_type": "Patient"})
    assert manifest["output"][0]["count"] == 1


def test_group_export_in_several_chunks_writes_each_resource_once(bulk, worker, monkeypatch):
    from fhir_server.bulk import exporter

    monkeypatch.setattr(exporter, "ID_CHUNK", 1)  # one query per member
    p1, p2 = _patient(bulk, "A"), _patient(bulk, "B")
    shared = _create(
        bulk,
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "x"},
            "subject": {"reference": f"Patient/{p1}"},
            "performer": [{"reference": f"Patient/{p2}"}],
        },
    )
    own = _observation(bulk, p2)
    group = _create(
        bulk,
        {
            "resourceType": "Group",
            "type": "person",
            "actual": True,
            "member": [{"entity": {"reference": f"Patient/{p1}"}}, {"entity": {"reference": f"Patient/{p2}"}}],
        },
    )
    manifest = _export(bulk, f"/fhir/Group/{group}/$export", params={"_type": "Patient,Observation"})
    files = _files(bulk, manifest)
    assert sorted(json.loads(line)["id"] for line in files["Observation"]) == sorted([shared, own])
    assert sorted(json.loads(line)["id"] for line in files["Patient"]) == sorted([p1, p2])


def test_head_of_status_manifest_and_files_is_their_get_without_the_body(bulk, worker):
    """HEAD is GET without the body (RFC 9110 §9.3.2): it answered 405 on every ``$export-*`` path."""
    _patient(bulk, "Head")
    location = bulk.get("/fhir/$export", headers=ASYNC).headers["Content-Location"]
    assert wait_done(bulk, location).status_code == 200
    status = location[len("http://testserver") :]
    file_url = bulk.get(status).json()["output"][0]["url"][len("http://testserver") :]
    for url in (status, file_url, f"{status}-nope", file_url.replace(".ndjson", "x.ndjson")):
        got, head = bulk.get(url), bulk.head(url)
        assert head.status_code == got.status_code and head.content == b""
        assert {k: v for k, v in head.headers.items() if k != "date"} == {k: v for k, v in got.headers.items() if k != "date"}


def test_head_of_an_export_file_never_reads_it(bulk, worker, monkeypatch):
    """A HEAD of an NDJSON or error file is answered from the file's size and times: the GET it
    runs (request_forms) read the whole file only for its bytes to be dropped. Same status and
    headers as the GET; opening the file during the HEAD fails the test."""
    for n in range(3):
        _patient(bulk, f"Head{n}")
    location = _kickoff(
        bulk, "/fhir/$export", params={"_type": "Patient", "_until": "2026-01-01"}, headers={"Prefer": "respond-async, handling=lenient"}
    )
    manifest = wait_done(bulk, location.headers["Content-Location"]).json()
    urls = [manifest["output"][0]["url"], manifest["error"][0]["url"]]
    for url in (u[len("http://testserver") :] for u in urls):
        got = bulk.get(url)
        assert got.status_code == 200 and got.content

        def unread(*args, url=url, **kwargs):
            raise AssertionError(f"the HEAD of {url} opened the file")

        with monkeypatch.context() as m:
            m.setattr("anyio.open_file", unread)
            head = bulk.head(url)
        assert head.status_code == 200 and head.content == b""
        assert {k: v for k, v in head.headers.items() if k != "date"} == {k: v for k, v in got.headers.items() if k != "date"}
        assert int(head.headers["content-length"]) == got.num_bytes_downloaded  # the bytes sent


def test_an_export_file_is_gzipped_for_a_client_that_accepts_it(bulk, worker):
    """The NDJSON files are the largest responses: streamed from disk, compressed on the way."""
    for n in range(40):
        _patient(bulk, f"Kompres{n}")
    manifest = _export(bulk, "/fhir/$export", params={"_type": "Patient"})
    url = manifest["output"][0]["url"]
    plain = bulk.get(url, headers={"Accept-Encoding": "identity"})
    packed = bulk.get(url, headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in plain.headers
    assert packed.headers["content-encoding"] == "gzip"
    assert packed.headers["content-type"].startswith("application/fhir+ndjson")
    assert packed.content == plain.content  # decoded: the same lines
    assert len(plain.content.splitlines()) == 40
