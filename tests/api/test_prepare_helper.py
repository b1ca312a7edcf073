"""The prepare helper (service/prepare_helper.py): part of a large transaction Bundle validated
and indexed in a forked process, with the same outcome as in one.

A real helper process runs here. The machine's spare CPU decides in production whether a Bundle
is shared; the tests share every one (``_spare`` fixed to yes) and count what was sent, so the
helper is known to have done the work being compared.
"""

from __future__ import annotations

import copy
import gc
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient

from fhir_server import jsonio
from fhir_server.app import create_app
from fhir_server.config import Settings
from fhir_server.service import prepare_helper
from fhir_server.service.indexing import index_rows
from fhir_server.service.prepare_helper import PrepareHelper, answers_of, decode, encode
from fhir_server.service.resources import ResourceService
from tests.conftest import BACKENDS, database, empty_tables
from tests.waiting import wait_until

H = {"Content-Type": "application/fhir+json", "Prefer": "return=OperationOutcome"}
NPI = "http://hl7.org/fhir/sid/us-npi"


def _started(monkeypatch: pytest.MonkeyPatch | None = None) -> PrepareHelper:
    helper = PrepareHelper(r4b_model_check=True, region_codes="warn")
    helper.start()
    if monkeypatch is not None:
        monkeypatch.setattr(helper, "_spare", lambda: True)
    return helper


@pytest.fixture(scope="module")
def helper() -> Iterator[PrepareHelper]:
    started = _started()
    yield started
    started.close()


@pytest.fixture
def sent(helper, monkeypatch) -> list[int]:
    """The number of entries each shared Bundle sent to the helper (every Bundle is offered)."""
    counts: list[int] = []
    real = helper.submit

    def counting(index, jobs):
        pending = real(index, jobs)
        if pending is not None:
            counts.append(len(jobs))
        return pending

    monkeypatch.setattr(helper, "_spare", lambda: True)
    monkeypatch.setattr(helper, "submit", counting)
    return counts


def _with_helper(client: TestClient, helper: PrepareHelper | None) -> None:
    client.app.state.fhir.services.bundles.prepare_helper = helper


def _observation(n: int, value: object) -> dict:
    return {
        "resourceType": "Observation",
        "id": f"obs{n}",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2"}]},
        "subject": {"reference": "Patient/pat0"},
        "performer": [{"reference": f"Practitioner?identifier={NPI}|99{n % 3}"}],
        "effectiveDateTime": f"2024-07-{1 + n % 28:02d}T08:00:00+07:00",
        "valueQuantity": {"value": value, "unit": "cm", "system": "http://unitsofmeasure.org", "code": "cm"},
    }


def _bundle(resources: list[dict]) -> bytes:
    entries = [{"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in resources]
    return orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries})


def _practitioners() -> bytes:
    return _bundle([{"resourceType": "Practitioner", "id": f"pr{n}", "identifier": [{"system": NPI, "value": f"99{n}"}]} for n in range(3)])


def _outcome(client: TestClient, body: bytes) -> tuple[int, object]:
    """The status and the answer, less what differs from run to run (ids and times)."""
    r = client.post("/fhir", content=body, headers=H)
    answer = r.json()
    answer.pop("id", None)
    answer.pop("meta", None)
    for entry in answer.get("entry", []):
        entry.get("response", {}).pop("lastModified", None)
    return r.status_code, answer


def _state(client: TestClient) -> dict[str, object]:
    """What searches and a read see of what the Bundle wrote."""
    found = client.get("/fhir/Observation", params={"value-quantity": "gt170", "_count": "100", "_elements": "id"}).json()
    by_performer = client.get("/fhir/Observation", params={"performer": "Practitioner/pr1", "_summary": "count"}).json()
    dated = client.get("/fhir/Observation", params={"date": "2024-07-03", "_summary": "count"}).json()
    read = client.get("/fhir/Observation/obs3").json()
    return {
        "gt170": sorted(e["resource"]["id"] for e in found.get("entry", [])),
        "pr1": by_performer.get("total"),
        "dated": dated.get("total"),
        "obs3": {k: v for k, v in read.items() if k != "meta"},
    }


BUNDLES = {
    # decimals that keep their digits (the whole Bundle takes the exact path)
    "exact decimals": [{"resourceType": "Patient", "id": "pat0"}] + [_observation(n, f"{170 + n}.50") for n in range(39)],
    # plain floats and integers
    "floats": [{"resourceType": "Patient", "id": "pat0"}] + [_observation(n, 170.25 + n if n % 2 else 170 + n) for n in range(39)],
}


@pytest.mark.parametrize("case", sorted(BUNDLES))
def test_a_shared_bundle_answers_and_stores_what_one_process_does(client, helper, sent, case):
    def run(with_helper: bool) -> tuple[tuple[int, object], dict[str, object]]:
        empty_tables(client.app.state.fhir.db.engine)
        _with_helper(client, helper if with_helper else None)
        try:
            assert client.post("/fhir", content=_practitioners(), headers=H).status_code == 200
            resources = copy.deepcopy(BUNDLES[case])
            text = _bundle(resources).replace(b'"value":"', b'"value":').replace(b'0","unit"', b'0,"unit"')
            return _outcome(client, text), _state(client)
        finally:
            _with_helper(client, None)

    alone = run(False)
    shared = run(True)
    assert sent == [20]  # the helper prepared the last half of the 40 entries
    assert shared[0][0] == 200, shared[0]
    assert shared[1]["pr1"] == 13 and shared[1]["dated"] == 2 and len(shared[1]["gt170"]) == (39 if case == "exact decimals" else 38)
    assert shared == alone


def test_an_invalid_entry_in_the_helpers_part_fails_the_transaction_as_it_did(client, helper, sent):
    resources = [{"resourceType": "Patient", "id": f"p{n}", "gender": "female"} for n in range(30)]
    resources[27]["gender"] = "perempuan"  # not in the required value set
    resources[28]["birthDate"] = "1990-02-30"  # no such day
    body = _bundle(resources)
    alone = _outcome(client, body)
    empty_tables(client.app.state.fhir.db.engine)
    _with_helper(client, helper)
    try:
        shared = _outcome(client, body)
    finally:
        _with_helper(client, None)
    assert sent == [15]  # entries 15-29: 27 and 28 were the helper's
    assert alone[0] == 422 and shared == alone
    assert "perempuan" in str(shared[1])
    assert client.get("/fhir/Patient", params={"_summary": "count"}).json()["total"] == 0  # nothing written


def test_a_transaction_that_fails_before_the_helpers_entries_leaves_no_answer_behind(client, helper, sent):
    """Its answers are read all the same: the next Bundle gets its own, not the failed one's."""
    _with_helper(client, helper)
    try:
        failing = [{"resourceType": "Patient", "id": f"f{n}", "gender": "female"} for n in range(30)]
        failing[0]["gender"] = "perempuan"  # the server's own part: fails before the helper's is read
        assert client.post("/fhir", content=_bundle(failing), headers=H).status_code == 422
        good = [{"resourceType": "Patient", "id": f"g{n}", "name": [{"family": f"Baik{n}"}]} for n in range(30)]
        assert client.post("/fhir", content=_bundle(good), headers=H).status_code == 200
    finally:
        _with_helper(client, None)
    assert sent == [15, 15]
    found = client.get("/fhir/Patient", params={"family": "Baik29"}).json()
    assert [e["resource"]["id"] for e in found["entry"]] == ["g29"]  # its own rows, not f29's


def test_a_helper_that_ends_midway_leaves_its_entries_to_this_process(client, monkeypatch):
    """Killed after it was sent the entries: they are prepared here, the Bundle is written whole,
    and the next Bundles are prepared here too (a helper that has ended takes no more)."""
    own = _started(monkeypatch)
    real = own.submit
    killed: list[int] = []

    def submit_then_die(index, jobs):
        pending = real(index, jobs)
        assert own._pid is not None
        os.kill(own._pid, 9)
        killed.append(len(jobs))
        return pending

    monkeypatch.setattr(own, "submit", submit_then_die)
    _with_helper(client, own)
    try:
        patients = [{"resourceType": "Patient", "id": f"k{n}", "name": [{"family": f"Mati{n}"}]} for n in range(30)]
        r = client.post("/fhir", content=_bundle(patients), headers=H)
        assert r.status_code == 200, r.text
        assert killed == [15]  # the entries were sent, then the helper was killed
        # SIGKILL takes effect when the kernel next runs the helper: on a loaded machine after the
        # Bundle may be answered (its answers read first); once it has ended it takes no more
        wait_until(lambda: not own.running(), timeout=30, message="the killed helper ends")
        assert own.share(30) == 0 and not own.running()
        again = [{"resourceType": "Patient", "id": f"j{n}", "name": [{"family": f"Lagi{n}"}]} for n in range(30)]
        assert client.post("/fhir", content=_bundle(again), headers=H).status_code == 200
    finally:
        _with_helper(client, None)
        own.close()
    for family, res_id in (("Mati0", "k0"), ("Mati29", "k29"), ("Lagi29", "j29")):
        found = client.get("/fhir/Patient", params={"family": family}).json()
        assert [e["resource"]["id"] for e in found["entry"]] == [res_id]  # indexed too


def test_a_transaction_beside_another_in_this_process_is_prepared_here(client, helper, sent):
    """Several transactions in flight (several clients): the cores are busy, nothing is sent."""
    bundles = client.app.state.fhir.services.bundles
    _with_helper(client, helper)
    bundles._in_flight += 1  # another transaction, waiting for the write lock, say
    try:
        patients = [{"resourceType": "Patient", "id": f"b{n}", "name": [{"family": f"Berdua{n}"}]} for n in range(30)]
        assert client.post("/fhir", content=_bundle(patients), headers=H).status_code == 200
        assert sent == []
    finally:
        bundles._in_flight -= 1
    try:
        again = [{"resourceType": "Patient", "id": f"s{n}", "name": [{"family": f"Sendiri{n}"}]} for n in range(30)]
        assert client.post("/fhir", content=_bundle(again), headers=H).status_code == 200
        assert sent == [15]  # alone again: shared
    finally:
        _with_helper(client, None)
    assert bundles._in_flight == 0


def test_a_helper_reaped_by_another_thread_is_seen_as_ended(monkeypatch):
    """The write thread stopping a failed helper and the event loop asking after it race: either
    may reap it first, and the other must see it ended, not fail the request."""
    own = _started(monkeypatch)
    assert own._pid is not None
    os.kill(own._pid, 9)
    os.waitpid(own._pid, 0)  # reaped here, behind the helper's back
    assert own.running() is False and own.share(100) == 0
    own.close()


def test_small_bundles_a_busy_helper_and_busy_cores_are_prepared_here(helper, monkeypatch):
    monkeypatch.setattr(helper, "_spare", lambda: True)
    assert helper.share(prepare_helper.MIN_JOBS - 1) == 0
    assert helper.share(100) == 50
    pending = helper.submit(True, [("Patient", "b1", *encode({"resourceType": "Patient", "id": "b1"}))])
    assert pending is not None
    assert helper.share(100) == 0 and helper.submit(True, [("Patient", "b2", b"{}", False)]) is None  # one Bundle at a time
    answer = pending.answer(0)
    assert answer is not None and answer[1] is None and answer[2] is not None
    assert helper.share(100) == 50
    monkeypatch.setattr(helper, "_spare", lambda: False)
    assert helper.share(100) == 0  # every core busy: nothing to gain


def test_spare_cpu_is_idle_time_or_the_helpers_own_since_the_last_bundle(monkeypatch):
    own = PrepareHelper(r4b_model_check=True, region_codes="warn")
    readings = iter([(100.0, 1.0), (100.1, 1.0), (100.6, 1.0), (100.7, 1.4)])
    monkeypatch.setattr(prepare_helper, "machine_usage", lambda pid: next(readings))

    def second_later() -> bool:
        assert own._usage is not None
        own._usage.at -= 1.0  # the last look was a second ago
        return own._spare()

    assert own._spare() is True  # the first look has nothing to compare
    assert second_later() is False  # 0.1 s of a core idle in a second: every core busy
    assert second_later() is True  # 0.5 s idle
    assert second_later() is True  # 0.1 s idle and 0.4 s of the helper's own work
    monkeypatch.setattr(prepare_helper, "machine_usage", lambda pid: None)
    assert own._spare() is True  # no /proc: assume a core to spare


def test_the_machines_usage_is_read_from_proc(helper):
    usage = prepare_helper.machine_usage(helper._pid)
    assert usage is not None
    idle, helper_seconds = usage
    assert idle > 0 and helper_seconds >= 0
    assert prepare_helper.machine_usage(None) == (pytest.approx(idle, abs=5.0), 0.0)


@pytest.mark.parametrize(
    "text",
    [
        b'{"resourceType":"Observation","valueQuantity":{"value":1.50}}',
        b'{"resourceType":"Observation","valueQuantity":{"value":-0}}',
        b'{"resourceType":"Observation","valueInteger":123456789012345678901234}',
        b'{"resourceType":"Observation","valueQuantity":{"value":2.5},"component":[{"valueQuantity":{"value":1e3}}]}',
        b'{"resourceType":"Observation","valueQuantity":{"value":2.5}}',
        b'{"resourceType":"Observation","valueQuantity":{"value":0.00001}}',
    ],
)
def test_a_resource_reaches_the_helper_with_the_values_this_process_holds(text):
    held = jsonio.loads(text)
    again = decode(*encode(held))
    assert again == held
    assert repr(again) == repr(held)  # the same types: ExactDecimal, int, float
    if any(isinstance(v, Decimal) for v in _leaves(held)):
        assert jsonio.dumps(again) == jsonio.dumps(held) == text


def _leaves(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _leaves(v)
    elif isinstance(value, list):
        for v in value:
            yield from _leaves(v)
    else:
        yield value


def test_the_helpers_work_is_prepare_updates_itself():
    service = ResourceService(None, prepare_index=index_rows)  # type: ignore[arg-type]
    resources = [
        {"resourceType": "Patient", "id": "a", "gender": "x"},
        {"resourceType": "Patient", "id": "b", "name": [{"family": "Siti"}], "birthDate": "1990-01-01"},
        {"resourceType": "Observation", "id": "c", "status": "final", "code": {"text": "x"}, "subject": {"reference": "Patient/b"}},
    ]
    answers = answers_of(service.prepare_updates, [(r["resourceType"], r["id"], *encode(r)) for r in resources], True)
    local = service.prepare_updates([(r["resourceType"], r["id"], r, None) for r in resources], index=True)
    for (warnings, error, rows), here in zip(answers, local, strict=True):
        assert warnings == here.warnings and rows == here.rows
        assert error == (None if here.error is None else (here.error.status, here.error.issues, here.error.headers))
    assert answers[0][1] is not None and answers[1][2].string  # a failure and a resource's rows both came back


def test_the_helper_ends_with_its_server_process():
    """A server worker killed outright: the helper sees its input end and exits."""
    code = (
        "import os, sys\n"
        "from fhir_server.service.prepare_helper import PrepareHelper\n"
        "h = PrepareHelper(True, 'warn'); h.start(); print(h._pid, flush=True); os._exit(0)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[2])
    pid = int(done.stdout.split()[0])
    deadline = time.monotonic() + 10
    while _alive(pid):
        assert time.monotonic() < deadline, f"the helper {pid} outlived its server"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has ended (nobody here reaps an orphan)


@pytest.fixture
def worker_gc() -> Iterator[None]:
    """A server worker's app (``freeze_gc``) freezes this process's objects and sets the
    collector's thresholds: both undone afterwards."""
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_server_worker_forks_its_helper_and_ends_it(backend, tmp_path, worker_gc):
    with database(backend, tmp_path) as url:
        app = create_app(Settings(database_url=url, base_url="http://testserver/fhir"), freeze_gc=True)
        with TestClient(app) as c:
            helper = c.app.state.fhir.services.bundles.prepare_helper
            assert isinstance(helper, PrepareHelper) and helper.running()
            pid = helper._pid
            assert pid is not None and pid != os.getpid()
            assert gc.get_threshold()[0] == 20_000  # young collections tuned for Bundles (app.py)
            patients = [{"resourceType": "Patient", "id": f"w{n}", "name": [{"family": f"Pekerja{n}"}]} for n in range(30)]
            assert c.post("/fhir", content=_bundle(patients), headers=H).status_code == 200
            assert c.get("/fhir/Patient", params={"family": "Pekerja29"}).json()["entry"][0]["resource"]["id"] == "w29"
        assert c.app.state.fhir.services.bundles.prepare_helper is None
        assert not _alive(pid)
        off = create_app(Settings(database_url=url, base_url="http://testserver/fhir", prepare_helper=False), freeze_gc=True)
        with TestClient(off) as c:
            assert c.app.state.fhir.services.bundles.prepare_helper is None


def test_token_mode_a_shared_bundle_is_authorized_first(secured, helper, sent):
    """A token without write access to the Bundle's types is refused before anything is
    prepared, by either process."""
    from tests.security.test_token_auth_http import auth, token_for

    token = token_for(secured, "system/Patient.read")
    _with_helper(secured, helper)
    try:
        patients = [{"resourceType": "Patient", "id": f"s{n}"} for n in range(30)]
        r = secured.post("/fhir", content=_bundle(patients), headers=auth(token))
        assert r.status_code == 403, r.text
        assert r.json()["resourceType"] == "OperationOutcome"
        assert sent == []  # refused before any entry was sent
        writer = token_for(secured, "system/Patient.read system/Patient.write")
        r = secured.post("/fhir", content=_bundle(patients), headers=auth(writer))
        assert r.status_code == 200, r.text
        assert sent == [15]
    finally:
        _with_helper(secured, None)
