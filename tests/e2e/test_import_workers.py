"""``import_workers``: transactions written by forked processes, each once its prerequisites are done."""

from __future__ import annotations

import os
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
    def writer() -> Iterator[import_workers.WriteBatch]:
        def write(batch: list[int]) -> dict[int, str]:
            with log.open("a") as f:  # one line per transaction, appended when it is done
                f.write(f"{os.getpid()} {batches.index(batch)}\n")
            return {i: f"201 Created by {os.getpid()}" for i in batch}

        yield write

    done: list[int] = []
    outcome = import_workers.write_in_workers(2, batches, after, writer, done.append)
    assert sorted(outcome) == [0, 1, 2, 3, 4, 5] and sorted(done) == [1, 1, 1, 1, 2]
    order = [int(line.split()[1]) for line in log.read_text().splitlines()]
    assert sorted(order) == [0, 1, 2, 3, 4]
    for b, need in enumerate(after):
        assert all(order.index(a) < order.index(b) for a in need)
    assert os.getpid() not in {int(line.split()[0]) for line in log.read_text().splitlines()}


def test_a_failing_worker_stops_the_import_with_its_reason():
    @contextmanager
    def writer() -> Iterator[import_workers.WriteBatch]:
        def write(batch: list[int]) -> dict[int, str]:
            if batch == [1]:
                raise OSError("disk full")
            return {i: "201 Created" for i in batch}

        yield write

    with pytest.raises(RuntimeError, match=r"an import worker failed:(.|\n)*OSError: disk full"):
        import_workers.write_in_workers(2, [[0], [1], [2]], [set(), {0}, {1}], writer)
