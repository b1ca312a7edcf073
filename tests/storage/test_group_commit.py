"""Group commit (storage/group_commit.py): the creates an event loop submits share one
transaction; a failing write never takes the others down; waiting for SQLite's write lock
never blocks the loop. SQLite and PostgreSQL (the ``client`` fixture)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
import sqlalchemy as sa

from fhir_server.errors import FhirError
from fhir_server.service.access import OPEN
from fhir_server.service.pipeline import Answer, Interaction, Pipeline
from fhir_server.service.resources import ResourceService
from fhir_server.storage import repository as repo
from fhir_server.storage.db import Database
from fhir_server.storage.group_commit import GroupCommitter
from fhir_server.storage.tables import resources as resources_table
from tests.waiting import async_wait_until, wait_until

NIK = "https://fhir.kemkes.go.id/id/nik"


@pytest.fixture
def service(client) -> ResourceService:
    return client.app.state.fhir.resources


@pytest.fixture
def pipeline(client) -> Pipeline:
    """A pipeline over the app's services with a group committer of its own: the app's committer
    belongs to the app's event loop (its workers write through it), these tests run loops of
    their own."""
    return Pipeline(client.app.state.fhir.services, GroupCommitter(client.app.state.fhir.db), audit_writes=False)


async def _create(pipeline: Pipeline, resource: dict) -> Answer:
    """A plain create through the pipeline's one write path (validated before it is queued)."""
    return await pipeline.handle(Interaction("create", "http://testserver/fhir", OPEN, "Patient", body=resource))


def _patient(nik: str) -> dict:
    return {"resourceType": "Patient", "identifier": [{"system": NIK, "value": nik}], "name": [{"family": "Lubis"}]}


def _stored_ids(db) -> set[str]:
    with db.read() as conn:
        return set(conn.execute(sa.select(resources_table.c.res_id)).scalars())


def test_concurrent_creates_go_into_one_transaction(service: ResourceService):
    committer = GroupCommitter(service.db)
    transactions: list[object] = []

    def create(nik: str):
        def work(conn: sa.Connection):
            transactions.append(conn.get_transaction())  # kept alive, so identities stay distinct
            return service.create_in(conn, "Patient", _patient(nik))

        return committer.run(work, new_resources=1)

    async def main():
        return await asyncio.gather(*(create(str(n)) for n in range(20)))

    results = asyncio.run(main())
    assert len({id(t) for t in transactions}) == 1
    assert _stored_ids(service.db) == {r.stored.res_id for r in results}
    assert len(results) == 20 and all(r.status == 201 for r in results)
    for r in results:  # version and index rows were written too
        assert service.read("Patient", r.stored.res_id).version == 1
        assert repo.read_version(service.db, "Patient", r.stored.res_id, 1) is not None


def test_grouped_creates_through_the_pipeline_are_each_stored(service: ResourceService, pipeline: Pipeline):
    async def main():
        return await asyncio.gather(*(_create(pipeline, _patient(str(n))) for n in range(5)))

    results = asyncio.run(main())
    assert [r.status for r in results] == [201] * 5
    assert len({r.stored.res_id for r in results if r.stored}) == 5
    for r in results:
        assert r.stored is not None
        body = service.read("Patient", r.stored.res_id).body
        assert body is not None and b'"versionId":"1"' in body


def test_invalid_resource_is_refused_before_it_is_queued(service: ResourceService, pipeline: Pipeline, monkeypatch):
    queued: list[object] = []
    monkeypatch.setattr(pipeline.writes, "run", lambda *a, **k: queued.append(a))

    async def main():
        await _create(pipeline, {"resourceType": "Patient", "gender": "boy"})

    with pytest.raises(FhirError) as caught:
        asyncio.run(main())
    assert caught.value.status == 422
    assert queued == []
    assert _stored_ids(service.db) == set()


def test_a_failing_write_leaves_the_others_committed_and_itself_rolled_back(service: ResourceService):
    committer = GroupCommitter(service.db)

    def good(nik: str):
        return committer.run(lambda conn: service.create_in(conn, "Patient", _patient(nik)), new_resources=1)

    def bad(conn: sa.Connection):
        written = service.create_in(conn, "Patient", _patient("bad"))
        raise RuntimeError(f"failed after writing {written.stored.res_id}")

    async def main():
        return await asyncio.gather(good("1"), committer.run(bad, new_resources=1), good("2"), return_exceptions=True)

    first, failure, second = asyncio.run(main())
    assert isinstance(failure, RuntimeError)
    written_by_bad = str(failure).rsplit(" ", 1)[1]
    stored = _stored_ids(service.db)
    assert stored == {first.stored.res_id, second.stored.res_id}
    assert written_by_bad not in stored
    # the retried good writes are whole: their version rows are there
    for r in (first, second):
        assert repo.read_version(service.db, "Patient", r.stored.res_id, 1) is not None


def test_another_open_write_transaction_does_not_block_the_loop(service: ResourceService, pipeline: Pipeline):
    """SQLite: the create waits for the write lock while the loop goes on; PostgreSQL has no
    database-wide write lock, so the create commits while the other transaction is still open."""
    sqlite = service.db.dialect == "sqlite"
    held, release = threading.Event(), threading.Event()

    def other_writer() -> None:  # another thread (or worker process) in a long write transaction
        with service.db.write() as conn:
            service.create_in(conn, "Patient", _patient("other"))
            held.set()
            release.wait(120)  # until the test says so (the timeout only ends a broken test)

    thread = threading.Thread(target=other_writer)
    thread.start()
    assert held.wait(30)

    async def main():
        create = asyncio.ensure_future(_create(pipeline, _patient("mine")))
        ticks = 0
        for _ in range(20):  # the loop keeps running while the create waits for the lock
            await asyncio.sleep(0.005)
            ticks += 1
        if sqlite:
            assert not create.done()  # it waits for the lock the other transaction holds
        else:  # it commits while the other transaction is still open, however long it takes
            await asyncio.wait_for(asyncio.shield(create), 30)
            assert not release.is_set() and thread.is_alive()
        release.set()
        result = await asyncio.wait_for(create, 30)
        return ticks, result

    try:
        ticks, result = asyncio.run(main())
    finally:
        release.set()
        thread.join()
    assert ticks == 20
    assert service.read("Patient", result.stored.res_id).version == 1
    assert len(_stored_ids(service.db)) == 2


def test_try_write_lock_is_exclusive_across_database_objects(service: ResourceService, tmp_path):
    """Two Database objects on one SQLite file stand for two worker processes (the flock)."""
    if service.db.dialect != "sqlite":
        assert service.db.try_write_lock()  # nothing to take on PostgreSQL
        service.db.release_write_lock()
        return
    from fhir_server.storage.db import Database

    # both of its own: the app's Database is also locked now and then by the app's background
    # writers (audit flusher, subscription worker), which made this test fail once in CI
    mine = Database(sa.create_engine(service.db.engine.url))
    other = Database(sa.create_engine(service.db.engine.url))
    try:
        # the app's background writers may hold the file's lock for a moment: wait for it
        wait_until(mine.try_write_lock, message="the file lock")
        assert not other.try_write_lock()
        mine.release_write_lock()
        wait_until(other.try_write_lock, message="the file lock")
        other.release_write_lock()
    finally:
        other.dispose()
        mine.dispose()


def test_a_work_alone_gets_its_own_transaction_and_runs_once(service: ResourceService):
    committer = GroupCommitter(service.db)
    transactions: dict[str, object] = {}
    runs: list[str] = []

    def work(name: str, fail: bool = False):
        def run(conn: sa.Connection):
            runs.append(name)
            transactions[name] = conn.get_transaction()
            result = service.create_in(conn, "Patient", _patient(name))
            if fail:
                raise ValueError(name)
            return result

        return run

    async def main():
        return await asyncio.gather(
            committer.run(work("a"), new_resources=1),
            committer.run(work("big", fail=True), alone=True),
            committer.run(work("b"), new_resources=1),
            return_exceptions=True,
        )

    a, big, b = asyncio.run(main())
    assert isinstance(big, ValueError)
    assert transactions["a"] is transactions["b"] and transactions["big"] is not transactions["a"]
    assert sorted(runs) == ["a", "b", "big"]  # the failure alone was not retried, nor were the others
    assert _stored_ids(service.db) == {a.stored.res_id, b.stored.res_id}


def test_a_waiting_loop_is_woken_by_the_release_not_by_polling(service: ResourceService, monkeypatch):
    """Another process's release wakes the waiting loop through ``<database>.lock.fifo``: with the
    fallback timeout set to a minute, only the wake-up can end the wait within the test."""
    if service.db.dialect != "sqlite":  # PostgreSQL: no database-wide write lock, nothing to wait for
        assert service.db._file_lock is None
        asyncio.run(service.db.acquire_write_lock())
        return
    from fhir_server.storage import db as db_module

    monkeypatch.setattr(db_module, "_LOCK_WAIT_SECONDS", 60.0)
    other = db_module.Database(sa.create_engine(service.db.engine.url))  # stands for another worker
    # the waiter has a Database of its own too: the app's is also used by the app's background
    # workers (subscription delivery), whose in-process lock the test must not wait behind
    mine = db_module.Database(sa.create_engine(service.db.engine.url))
    try:
        assert other._file_lock is not None and other._file_lock.wake_fd is not None
        wait_until(other.try_write_lock, message="the file lock")  # app's writers may hold it a moment

        async def main() -> int:
            waiter = asyncio.ensure_future(mine.acquire_write_lock())
            ticks = 0
            for _ in range(10):  # the loop runs on while the lock is held elsewhere
                await asyncio.sleep(0.005)
                ticks += 1
            assert not waiter.done()
            other.release_write_lock()
            await asyncio.wait_for(waiter, 20)  # far below the 60 s fallback
            return ticks

        assert asyncio.run(main()) == 10
        mine.release_write_lock()
    finally:
        other.dispose()
        mine.dispose()


def test_waiting_for_the_lock_falls_back_to_retries_without_a_fifo(service: ResourceService, monkeypatch):
    """A file system without FIFOs (or a lost wake-up): the loop retries after a short wait."""
    if service.db.dialect != "sqlite":  # PostgreSQL: no database-wide write lock, nothing to wait for
        assert service.db._file_lock is None
        asyncio.run(service.db.acquire_write_lock())
        return
    from fhir_server.storage import db as db_module

    other = db_module.Database(sa.create_engine(service.db.engine.url))
    mine = db_module.Database(sa.create_engine(service.db.engine.url))  # not the app's (see above)
    try:
        assert mine._file_lock is not None
        monkeypatch.setattr(mine._file_lock, "wake_fd", None)
        wait_until(other.try_write_lock, message="the file lock")  # app's writers may hold it a moment

        async def main() -> None:
            waiter = asyncio.ensure_future(mine.acquire_write_lock())
            await asyncio.sleep(0.02)
            assert not waiter.done()
            other._file_lock.release()  # writes to the FIFO, which this waiter does not watch
            other._write_lock.release()
            await asyncio.wait_for(waiter, 20)

        asyncio.run(main())
        mine.release_write_lock()
    finally:
        other.dispose()
        mine.dispose()


def test_a_failure_outside_the_works_fails_the_callers_instead_of_hanging(service: ResourceService, monkeypatch):
    committer = GroupCommitter(service.db)

    async def broken_lock(**_: object) -> None:
        raise OSError("lock file gone")

    monkeypatch.setattr(service.db, "acquire_write_lock", broken_lock)

    async def main():
        return await asyncio.wait_for(asyncio.gather(*(committer.run(lambda conn: 1) for _ in range(3)), return_exceptions=True), 20)

    results = asyncio.run(main())
    assert [type(r) for r in results] == [OSError, OSError, OSError]
    assert committer._pending == [] and committer._drainer is None


def test_dispose_closes_the_lock_files_and_a_disposed_database_still_writes(tmp_path):
    import os

    from fhir_server.storage import migrate
    from fhir_server.storage.db import Database

    lock = str(tmp_path / "x.sqlite3.lock")

    def open_on_lock() -> int:
        return sum(
            os.path.realpath(f"/proc/self/fd/{fd}").startswith(lock)
            for fd in os.listdir("/proc/self/fd")
            if os.path.exists(f"/proc/self/fd/{fd}")
        )

    db = Database.from_url(f"sqlite:///{tmp_path / 'x.sqlite3'}")
    migrate.upgrade(db.engine)
    assert open_on_lock() == 3  # the lock file, its wake-up FIFO and the waiting-writers file
    db.dispose()
    assert open_on_lock() == 0
    with db.write() as conn:  # used again after dispose (a second lifespan of the same app): reopened
        conn.execute(sa.text("CREATE TABLE t (x INTEGER)"))
    assert open_on_lock() == 3
    db.dispose()
    assert open_on_lock() == 0


def test_a_background_committer_takes_few_works_at_a_time_and_gives_way_after_each(service: ResourceService):
    """The SATUSEHAT sync's process (``build_state(background=True)``): short transactions, and
    after each one the lock goes to a writer that waited for it, not back to the next batch."""
    db = service.db
    committer = GroupCommitter(db, max_batch=2, background=True)
    order: list[str] = []
    transactions: list[object] = []
    other: list[threading.Thread] = []

    asking = threading.Event()

    def other_writer() -> None:
        """The server's process: its own database handle (its own lock files), waiting for the
        write lock as its event loop does (it says so: ``acquire_write_lock``)."""
        server = Database.from_url(db.engine.url.render_as_string(hide_password=False))
        try:
            asking.set()
            asyncio.run(server.acquire_write_lock())
            try:
                with server.write(locked=True) as conn:
                    order.append("other")
                    service.create_in(conn, "Patient", _patient("3171000000000099"))
            finally:
                server.release_write_lock()
        finally:
            server.dispose()

    def work(name: str):
        def run(conn: sa.Connection):
            transactions.append(conn.get_transaction())
            order.append(name)
            if name == "w1":
                other.append(threading.Thread(target=other_writer))
                other[0].start()
                # the other writer is waiting for the lock, as the committer can see, before w1
                # commits: the committer then defers to it (a thread blocked on the lock unseen had
                # to win a 1 ms window, which a loaded machine missed). PostgreSQL has no lock to
                # wait for: the other writer has written by then
                assert asking.wait(10)
                deadline = time.monotonic() + 10
                while not ("other" in order if db.dialect == "postgresql" else db.others_waiting_for_write_lock()):
                    assert time.monotonic() < deadline
                    time.sleep(0.005)
            return name

        return run

    async def main() -> list[str]:
        return await asyncio.gather(*(committer.run(work(f"w{i}")) for i in range(1, 6)))

    assert asyncio.run(main()) == ["w1", "w2", "w3", "w4", "w5"]
    other[0].join(10)
    assert len({id(t) for t in transactions}) == 3  # 2 + 2 + 1 works
    # on PostgreSQL the other writer does not wait for a lock at all; on SQLite it waited for the
    # first transaction and got the lock before the second
    assert order.index("other") < order.index("w3")


def test_a_write_from_another_event_loop_is_refused_not_left_waiting(service: ResourceService):
    """One committer serves one event loop: a write submitted from another loop while a batch
    drains would be completed from the draining loop's thread and never wake its caller."""
    committer = GroupCommitter(service.db)
    draining, release = threading.Event(), threading.Event()

    def slow(conn: sa.Connection) -> str:
        draining.set()
        release.wait(10)
        return "first"

    results: list[str] = []
    thread = threading.Thread(target=lambda: results.append(asyncio.run(committer.run(slow))))
    thread.start()
    try:
        assert draining.wait(10)

        async def other_loop() -> str:
            return await committer.run(lambda conn: "second")

        with pytest.raises(RuntimeError, match="another event loop"):
            asyncio.run(other_loop())
    finally:
        release.set()
        thread.join(10)
    assert results == ["first"]
    assert asyncio.run(committer.run(lambda conn: "later")) == "later"  # the next loop may use it


def test_a_background_writer_lets_a_waiting_server_write_first(tmp_path):
    """SQLite, two processes on one file (two Database objects: each has its own lock file
    descriptors, so ``flock`` treats them as two processes). While the server's event loop waits
    for the write lock, the SATUSEHAT sync's process (``defer_to_others``) does not take it, even
    when it is free first: the server's writes never queue behind the sync's (issue 17)."""
    from fhir_server.storage.db import Database

    url = f"sqlite:///{tmp_path / 'x.sqlite3'}"
    holder, server, sync = Database.from_url(url), Database.from_url(url), Database.from_url(url)
    order: list[str] = []
    release = threading.Event()
    held = threading.Event()

    def hold() -> None:  # a third process in the middle of a write
        with holder.write():
            held.set()
            release.wait(10)

    async def main() -> None:
        thread = threading.Thread(target=hold)
        thread.start()
        assert held.wait(10)

        async def server_write() -> None:
            await server.acquire_write_lock()
            order.append("server")
            server.release_write_lock()

        waiting = asyncio.create_task(server_write())
        await async_wait_until(sync.others_waiting_for_write_lock, timeout=10)
        release.set()
        thread.join(10)  # blocking the loop: the server cannot take the lock meanwhile
        # the lock is free now, and the server's loop has not run since: a writer that does not
        # defer takes it at once; the sync waits until the server has written
        await sync.acquire_write_lock(defer_to_others=True)
        order.append("sync")
        sync.release_write_lock()
        await asyncio.wait_for(waiting, 10)
        assert not sync.others_waiting_for_write_lock()

    try:
        asyncio.run(main())
    finally:
        for db in (holder, server, sync):
            db.dispose()
    assert order == ["server", "sync"]


def test_a_background_committer_that_kept_a_server_waiting_pauses_before_its_next_write(tmp_path):
    """After a background transaction (the sync's process) during which another process waited for
    SQLite's write lock, the committer does not take the lock again for four times as long as it
    held it (so under contention it holds the lock at most a fifth of the time); without a waiter
    it goes on after the usual 1 ms (issue 17)."""
    import time

    from fhir_server.storage.db import Database

    url = f"sqlite:///{tmp_path / 'x.sqlite3'}"
    server, sync = Database.from_url(url), Database.from_url(url)
    assert server._file_lock is not None
    hold = 0.05
    times: dict[str, float] = {}

    def first(conn: sa.Connection) -> None:
        if times.get("contend"):
            server._file_lock.announce_waiting(True)  # the server begins to wait meanwhile
        time.sleep(hold)
        times["first_end"] = time.monotonic()

    def second(conn: sa.Connection) -> None:
        times["second_start"] = time.monotonic()

    async def gap(contend: bool) -> float:
        committer = GroupCommitter(sync, background=True)
        times.clear()
        times["contend"] = contend
        await committer.run(first)
        server._file_lock.announce_waiting(False)  # the server took its turn
        await committer.run(second)
        return times["second_start"] - times["first_end"]

    try:
        assert asyncio.run(gap(contend=True)) >= 4 * hold * 0.9
        assert asyncio.run(gap(contend=False)) < 4 * hold * 0.9
    finally:
        server.dispose()
        sync.dispose()


def test_a_writer_whose_first_announcement_met_a_look_announces_again(tmp_path):
    """A background process looks for waiting writers by taking the want file's lock exclusively
    for an instant; a writer announcing itself in that instant failed silently and never said it
    again, so the background process kept taking the lock before it (seen as a CI failure of the
    test above on a loaded machine: the other writer was never seen waiting)."""
    import asyncio
    import fcntl
    import os
    import threading
    import time

    from fhir_server.storage.db import Database

    path = tmp_path / "x.sqlite3"
    url = f"sqlite:///{path}"
    sync, server = Database.from_url(url), Database.from_url(url)
    assert sync.try_write_lock()  # the background transaction holds the lock
    assert sync._file_lock is not None
    looking = os.open(sync._file_lock._path + ".want", os.O_RDWR)
    fcntl.flock(looking, fcntl.LOCK_EX)  # a look in progress when the server begins to wait
    done = threading.Event()

    def server_writer() -> None:
        asyncio.run(server.acquire_write_lock())
        server.release_write_lock()
        done.set()

    writer = threading.Thread(target=server_writer)
    writer.start()
    try:
        time.sleep(0.05)  # the server tried and announced (or failed to) meanwhile
        fcntl.flock(looking, fcntl.LOCK_UN)
        os.close(looking)
        deadline = time.monotonic() + 5
        while not sync.others_waiting_for_write_lock():
            assert time.monotonic() < deadline, "the waiting server was never seen"
            time.sleep(0.005)
    finally:
        sync.release_write_lock()
        writer.join(10)
    assert done.is_set()
    sync.dispose()
    server.dispose()
