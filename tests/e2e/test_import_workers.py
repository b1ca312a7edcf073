"""``import_workers``: transactions written by forked processes, each once its prerequisites are done."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from fhir_server.service import import_workers

pytestmark = pytest.mark.skipif(not import_workers.available(), reason="no fork on this platform")


def test_each_transaction_is_written_once_after_its_prerequisites(tmp_path):
    log = tmp_path / "log"
    batches = [[0], [1, 2], [3], [4], [5]]
    after = [set(), {0}, {0}, {1, 2}, set()]

    @contextmanager
    def writer() -> Iterator[import_workers.Writer]:
        def write(batch: list[int]) -> dict[int, str]:
            if batch == [0]:
                time.sleep(0.5)  # everything else waits for it: the other worker does its idle work meanwhile
            with log.open("a") as f:  # one line per transaction, appended when it is done
                f.write(f"{os.getpid()} {batches.index(batch)}\n")
            return {i: f"201 Created by {os.getpid()}" for i in batch}

        def idle() -> Iterator[None]:
            for _ in range(3):
                with log.open("a") as f:
                    f.write(f"{os.getpid()} idle\n")
                yield

        yield write, idle()

    done: list[int] = []
    outcome = import_workers.write_in_workers(2, batches, after, writer, done.append)
    assert sorted(outcome) == [0, 1, 2, 3, 4, 5] and sorted(done) == [1, 1, 1, 1, 2]
    lines = log.read_text().splitlines()
    order = [int(line.split()[1]) for line in lines if not line.endswith("idle")]
    idle = [line.split()[0] for line in lines if line.endswith("idle")]
    assert idle and max(idle.count(pid) for pid in idle) <= 3  # done while waiting, each step once per worker
    assert sorted(order) == [0, 1, 2, 3, 4]
    for b, need in enumerate(after):
        assert all(order.index(a) < order.index(b) for a in need)
    assert os.getpid() not in {int(line.split()[0]) for line in lines}


def test_a_failing_worker_stops_the_import_with_its_reason():
    @contextmanager
    def writer() -> Iterator[import_workers.Writer]:
        def write(batch: list[int]) -> dict[int, str]:
            if batch == [1]:
                raise OSError("disk full")
            return {i: "201 Created" for i in batch}

        yield write, iter(())

    with pytest.raises(RuntimeError, match=r"an import worker failed:(.|\n)*OSError: disk full"):
        import_workers.write_in_workers(2, [[0], [1], [2]], [set(), {0}, {1}], writer)
