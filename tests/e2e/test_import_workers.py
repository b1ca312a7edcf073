"""``import_workers``: transactions written by processes forked from a warmed-up zygote, each
once its prerequisites are done."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from fhir_server.service import import_workers

pytestmark = pytest.mark.skipif(not import_workers.available(), reason="no fork on this platform")

#: what the zygote's ``warm`` built: the workers forked from it have it, the importer does not
_BUILT: dict[str, int] = {}


def _warm(job: str) -> None:
    if job == "broken":
        raise ValueError("a warm-up failure is only a lost head start")
    _BUILT[job] = os.getpid()


def test_each_transaction_is_written_once_after_its_prerequisites_by_warm_workers(tmp_path):
    log = tmp_path / "log"
    batches = [[0], [1, 2], [3], [4], [5]]
    after = [set(), {0}, {0}, {1, 2}, set()]

    @contextmanager
    def writer() -> Iterator[import_workers.WriteBatch]:
        def write(jobs: list[int]) -> dict[int, str]:
            if jobs == [0]:
                time.sleep(0.3)  # everything else waits for it
            with log.open("a") as f:  # one line per transaction, appended when it is done
                f.write(f"{os.getpid()} {batches.index(jobs)} {sorted(_BUILT)} {_BUILT.get('Patient')}\n")
            return {i: f"201 Created by {os.getpid()}" for i in jobs}

        yield write

    done: list[int] = []
    with import_workers.Workers(2, writer, _warm) as workers:
        for job in ("Patient", "broken", "Encounter"):
            workers.warm(job)
        outcome = workers.write(batches, after, done.append)
    assert sorted(outcome) == [0, 1, 2, 3, 4, 5] and sorted(done) == [1, 1, 1, 1, 2]
    assert not _BUILT  # built in the zygote only
    lines = [line.split(" ", 2) for line in log.read_text().splitlines()]
    order = [int(number) for _, number, _ in lines]
    assert sorted(order) == [0, 1, 2, 3, 4]
    for b, need in enumerate(after):
        assert all(order.index(a) < order.index(b) for a in need)
    writers = {int(pid) for pid, _, _ in lines}
    assert os.getpid() not in writers
    for _, _, built in lines:  # every worker has what the zygote built, failure or not, and the zygote built it
        names, zygote = built.rsplit(" ", 1)
        assert names == "['Encounter', 'Patient']"
        assert int(zygote) not in writers | {os.getpid()}


def test_a_failing_worker_stops_the_import_with_its_reason():
    @contextmanager
    def writer() -> Iterator[import_workers.WriteBatch]:
        def write(jobs: list[int]) -> dict[int, str]:
            if jobs == [1]:
                raise OSError("disk full")
            return {i: "201 Created" for i in jobs}

        yield write

    with (
        pytest.raises(RuntimeError, match=r"an import worker failed:(.|\n)*OSError: disk full"),
        import_workers.Workers(2, writer, _warm) as workers,
    ):
        workers.write([[0], [1], [2]], [set(), {0}, {1}])


def test_workers_never_asked_to_write_end_with_the_block():
    @contextmanager
    def writer() -> Iterator[import_workers.WriteBatch]:
        raise AssertionError("no worker is forked")
        yield  # pragma: no cover

    with import_workers.Workers(2, writer, _warm) as workers:
        workers.warm("Patient")
        zygote = workers._zygote
    assert not zygote.is_alive() and zygote.exitcode == 0
