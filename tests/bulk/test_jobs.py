"""Export jobs in the database: leases, take-over of a dead worker's job, no double runs,
cancellation while running, the transaction-time snapshot, the migration and the registry entry."""

from __future__ import annotations

import importlib
import json
import sys
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.config import Config
from alembic.script import ScriptDirectory

from fhir_server.bulk import jobs
from fhir_server.bulk.exporter import Cancelled, run_export
from fhir_server.bulk.worker import ExportWorker
from fhir_server.storage import migrate
from fhir_server.storage.bulk_tables import export_jobs
from fhir_server.storage.db import create_engine
from fhir_server.timeutil import now_us
from tests.bulk.conftest import ASYNC, wait_done
from tests.conftest import BACKENDS
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


def _job(db, **kw) -> str:
    with db.write() as conn:
        return jobs.create_job_in(conn, level="system", request_url="http://x/fhir/$export", client_id="anonymous", **kw)


def _patients(client, n: int) -> list[str]:
    ids = []
    for i in range(n):
        resp = client.post("/fhir/Patient", json={"resourceType": "Patient", "name": [{"family": f"P{i}"}]})
        assert resp.status_code == 201
        ids.append(resp.json()["id"])
    return ids


def test_a_dead_workers_job_is_taken_over_after_its_lease_and_completed(bulk, export_dir, clock):
    db = bulk.app.state.fhir.db
    _patients(bulk, 3)
    job_id = _job(db, types=["Patient"])
    dead = jobs.claim_next(db, "dead-worker", lease_seconds=30)
    assert dead is not None and dead.id == job_id and dead.attempts == 1
    # while the lease holds, nobody else gets it
    assert jobs.claim_next(db, "other", lease_seconds=5) is None
    clock.advance(29)
    assert jobs.claim_next(db, "other", lease_seconds=5) is None
    clock.advance(2)  # the dead worker never renews: its lease runs out
    survivor = ExportWorker(db, export_dir, lease_seconds=5, owner="survivor")
    assert survivor.run_once() == job_id
    job = jobs.get_job(db, job_id)
    assert job.status == "complete" and job.attempts == 2 and job.lease_owner is None
    assert job.manifest == {"output": [{"type": "Patient", "count": 3}]}
    # the dead worker, were it to wake up, can no longer write to the job
    assert not jobs.heartbeat(db, job_id, "dead-worker", 5)
    assert not jobs.finish(db, job_id, "dead-worker", {"output": []})
    assert jobs.get_job(db, job_id).status == "complete"
    lines = (export_dir / job_id / "Patient.ndjson").read_bytes().splitlines()
    assert len(lines) == 3


def test_a_job_is_given_up_after_too_many_dead_workers(bulk, clock):
    db = bulk.app.state.fhir.db
    job_id = _job(db)
    for attempt in range(jobs.MAX_ATTEMPTS):
        assert jobs.claim_next(db, f"w{attempt}", lease_seconds=30).attempts == attempt + 1
        clock.advance(31)  # its lease runs out
    assert jobs.claim_next(db, "last", lease_seconds=5) is None
    job = jobs.get_job(db, job_id)
    assert job.status == "error" and "abandoned" in job.error


def test_concurrent_claims_never_hand_a_job_to_two_workers(bulk):
    db = bulk.app.state.fhir.db
    job_ids = {_job(db) for _ in range(12)}
    claims: list[tuple[str, str]] = []
    lock = threading.Lock()
    start = threading.Barrier(4, timeout=60)

    def claimer(owner: str) -> None:
        start.wait()
        while True:
            job = jobs.claim_next(db, owner, lease_seconds=30)
            if job is None:
                return
            with lock:
                claims.append((job.id, owner))

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
        assert not th.is_alive(), "a claimer did not finish"
    assert sorted(j for j, _ in claims) == sorted(job_ids)  # each job claimed exactly once
    with db.read() as conn:
        rows = list(conn.execute(sa.select(export_jobs.c.attempts, export_jobs.c.status, export_jobs.c.lease_owner)))
    assert all(r.attempts == 1 and r.status == "running" for r in rows)
    assert {r.lease_owner for r in rows} == {o for _, o in claims}


@pytest.mark.slow
def test_two_running_workers_complete_every_job_once(bulk, export_dir):
    db = bulk.app.state.fhir.db
    _patients(bulk, 2)
    locations = [bulk.get("/fhir/$export", headers=ASYNC).headers["Content-Location"] for _ in range(6)]
    # leases longer than any stall of a loaded machine: each job runs once (take-overs: above)
    workers = [ExportWorker(db, export_dir, poll_interval=0.02, lease_seconds=60, owner=f"w{i}").start() for i in range(2)]
    try:
        for location in locations:
            assert wait_done(bulk, location).status_code == 200
    finally:
        for w in workers:
            w.stop(timeout=60)
    with db.read() as conn:
        rows = list(conn.execute(sa.select(export_jobs.c.attempts, export_jobs.c.status)))
    assert [(r.attempts, r.status) for r in rows] == [(1, "complete")] * 6


def test_cancel_while_running_stops_the_export_and_leaves_no_files(bulk, export_dir):
    db = bulk.app.state.fhir.db
    _patients(bulk, 5)
    location = bulk.get("/fhir/$export", headers=ASYNC, params={"_type": "Patient"}).headers["Content-Location"]
    job = jobs.claim_next(db, "runner", lease_seconds=30)
    assert job is not None
    calls = []

    def keep(progress: str) -> bool:
        calls.append(progress)
        if len(calls) == 1:
            assert bulk.delete(location).status_code == 202  # the client cancels mid-export
        return jobs.still_mine(db, job.id, "runner")

    with pytest.raises(Cancelled):
        run_export(db, job, export_dir, keep, batch_size=2)
    assert len(calls) == 1  # stopped at the first check, after one batch of 2 of the 5
    assert not any((export_dir / job.id).glob("**/*.ndjson"))
    assert not jobs.finish(db, job.id, "runner", {"output": []})
    assert bulk.get(location).status_code == 404


def test_the_files_are_the_state_at_the_transaction_time(bulk, export_dir):
    db = bulk.app.state.fhir.db
    first, second = _patients(bulk, 2)
    before = bulk.get(f"/fhir/Patient/{first}").content
    job_id = _job(db, types=["Patient"])
    job = jobs.claim_next(db, "runner", lease_seconds=30)  # the transaction time is now
    wait_until(lambda: now_us() > job.transaction_time_us)  # the changes below come after it
    assert (
        bulk.put(f"/fhir/Patient/{first}", json={"resourceType": "Patient", "id": first, "name": [{"family": "Changed"}]}).status_code
        == 200
    )
    assert bulk.delete(f"/fhir/Patient/{second}").status_code in (200, 204)
    _patients(bulk, 1)  # created after the transaction time
    manifest = run_export(db, job, export_dir, lambda p: True, batch_size=1)
    assert manifest == {"output": [{"type": "Patient", "count": 2}]}
    lines = (export_dir / job_id / "Patient.ndjson").read_bytes().splitlines()
    by_id = {json.loads(line)["id"]: line for line in lines}
    assert set(by_id) == {first, second}
    assert json.loads(by_id[first])["name"][0]["family"] == "P0"
    assert json.loads(by_id[first]) == json.loads(before)


def test_worker_stopping_mid_job_gives_it_back_to_the_queue(bulk, export_dir):
    db = bulk.app.state.fhir.db
    _patients(bulk, 3)
    job_id = _job(db, types=["Patient"])
    w = ExportWorker(db, export_dir, lease_seconds=30, owner="stopping", batch_size=1)
    w._stop.set()  # as if stop() was called while the job ran: the first check answers "stop"
    assert w.run_once() == job_id
    job = jobs.get_job(db, job_id)
    assert job.status == "queued" and job.lease_owner is None
    assert ExportWorker(db, export_dir, owner="next").run_once() == job_id
    assert jobs.get_job(db, job_id).status == "complete"


def test_revision_chain():
    cfg = Config()
    cfg.set_main_option("script_location", str(ROOT / "alembic"))
    script = ScriptDirectory.from_config(cfg)
    assert script.get_revision("0006_bulk").down_revision == "0005_audit"
    assert "0006_bulk" in {r.revision for r in script.iterate_revisions(script.get_current_head(), "base")}


@pytest.mark.slow
@pytest.mark.parametrize("fresh_database_url", BACKENDS, indirect=True)
def test_migration_matches_the_table_and_downgrades(fresh_database_url):
    engine = create_engine(fresh_database_url)
    try:
        migrate.upgrade(engine, "0006_bulk")
        options = {"patient_ids", "associated_data", "kickoff_issues"}  # added by 0012_export_job_options
        filters = {"type_filters", "elements"}  # added by 0019_export_filters
        assert {c["name"] for c in sa.inspect(engine).get_columns("export_jobs")} == {
            c.name for c in export_jobs.columns
        } - options - filters
        migrate.upgrade(engine, "0012_export_job_options")
        assert {c["name"] for c in sa.inspect(engine).get_columns("export_jobs")} == {c.name for c in export_jobs.columns} - filters
        migrate.upgrade(engine, "0019_export_filters")
        insp = sa.inspect(engine)
        table = export_jobs
        columns = {c["name"]: c for c in insp.get_columns(table.name)}
        assert set(columns) == {c.name for c in table.columns}
        for col in table.columns:
            assert columns[col.name]["nullable"] == col.nullable, col.name
        assert insp.get_pk_constraint(table.name)["name"] == "pk_export_jobs"
        assert {i["name"] for i in insp.get_indexes(table.name)} == {i.name for i in table.indexes}
        checks = {c["name"] for c in insp.get_check_constraints(table.name)}
        assert {"ck_export_jobs_status", "ck_export_jobs_level"} <= checks
        with engine.begin() as conn, pytest.raises(sa.exc.IntegrityError):
            conn.execute(
                export_jobs.insert().values(
                    id="x",
                    status="bogus",
                    level="system",
                    output_format="ndjson",
                    request_url="u",
                    client_id="c",
                    created_us=0,
                    updated_us=0,
                )
            )
        migrate.downgrade(engine, "0018_other_references")
        assert {c["name"] for c in sa.inspect(engine).get_columns("export_jobs")} == {c.name for c in export_jobs.columns} - filters
        migrate.downgrade(engine, "0011_subscriptions")
        insp = sa.inspect(engine)
        assert {c["name"] for c in insp.get_columns("export_jobs")} == {c.name for c in export_jobs.columns} - options - filters
        assert {"ck_export_jobs_status", "ck_export_jobs_level"} <= {c["name"] for c in insp.get_check_constraints("export_jobs")}
        migrate.downgrade(engine, "0005_audit")
        assert "export_jobs" not in sa.inspect(engine).get_table_names()
        migrate.upgrade(engine)
        assert "export_jobs" in sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_operation_is_registered_with_a_valid_definition_per_level():
    from fhir_server.model.validate import validate_resource
    from fhir_server.operations import registry

    urls = {}
    for stem in ("export", "patient-export", "group-export"):
        definition = registry.definition(stem)
        urls[stem] = definition["url"]
        assert definition["url"] == f"http://hl7.org/fhir/uv/bulkdata/OperationDefinition/{stem}"
        assert [i for i in validate_resource(definition) if i.severity in ("error", "fatal")] == []
    had = "fhir_server.bulk.operation" in sys.modules
    before = list(registry.OPERATIONS)
    try:
        importlib.import_module("fhir_server.bulk.operation")

        assert "export" in {o.name for o in registry.operations_for(None)}
        assert "export" in {o.name for o in registry.operations_for("Patient") if o.type_level}
        assert "export" in {o.name for o in registry.operations_for("Group") if o.instance}
        assert registry.find("export", None, instance=False).canonical == urls["export"]
        assert registry.find("export", "Patient", instance=False).canonical == urls["patient-export"]
        assert registry.find("export", "Group", instance=True).canonical == urls["group-export"]
    finally:
        if not had:  # leave the registry as the rest of the suite expects it
            registry.OPERATIONS[:] = before
            sys.modules.pop("fhir_server.bulk.operation", None)


def test_start_worker_reads_the_settings_and_stops(bulk):
    from fhir_server.bulk.worker import export_dir, lease_seconds, poll_interval, start_worker

    state = bulk.app.state.fhir
    assert export_dir(state.settings) == Path(state.settings.export_dir).resolve()
    assert poll_interval(state.settings) == 0.05 and lease_seconds(state.settings) == 5.0
    _patients(bulk, 1)
    handle = start_worker(state)
    try:
        location = bulk.get("/fhir/$export", headers=ASYNC).headers["Content-Location"]
        assert wait_done(bulk, location).status_code == 200
    finally:
        handle.stop(timeout=60)
    assert handle._thread is None


def test_settings_defaults_without_the_export_fields(tmp_path, monkeypatch):
    from fhir_server.bulk.worker import export_dir, lease_seconds, poll_interval
    from fhir_server.config import Settings

    monkeypatch.chdir(tmp_path)
    settings = Settings()
    assert export_dir(settings) == (tmp_path / (getattr(settings, "export_dir", "") or "fhir-export")).resolve()
    assert poll_interval(settings) > 0 and lease_seconds(settings) > 0


_CLAIMER = """
import sys
from fhir_server.bulk import jobs
from fhir_server.storage.db import Database
db = Database.from_url(sys.argv[1], pool_size=2)
sys.stdout.write("ready\\n"); sys.stdout.flush()
sys.stdin.readline()  # start together
while (job := jobs.claim_next(db, sys.argv[2], lease_seconds=30)) is not None:
    sys.stdout.write(job.id + "\\n")
db.dispose()
"""


@pytest.mark.slow  # two Python processes
def test_two_processes_never_claim_the_same_job(bulk):
    import subprocess

    db = bulk.app.state.fhir.db
    job_ids = {_job(db) for _ in range(20)}
    url = db.engine.url.render_as_string(hide_password=False)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CLAIMER, url, f"proc{i}"], cwd=ROOT, text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        for i in range(2)
    ]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    claimed = []
    for p in procs:
        out, _ = p.communicate(timeout=60)
        assert p.returncode == 0
        claimed += [line for line in out.splitlines() if line]
    assert sorted(claimed) == sorted(job_ids)  # every job once, none twice
