"""While no subscription counts, the worker is quiet (both backends): its rounds read no changes
(the cursor jumps to the newest seq) and come at most every ``_QUIET_ROUND_GAP_S``; a commit
that writes a Subscription still starts a round at once, and a subscription is never jumped over."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from fhir_server.state import ServerState, build_state
from fhir_server.storage import change_signal, changelog, claims, migrate
from fhir_server.subscriptions import matcher as matcher_module
from fhir_server.subscriptions import store
from fhir_server.subscriptions import worker as worker_module
from fhir_server.subscriptions.setup import new_worker
from tests.conftest import BACKENDS, database, empty_tables
from tests.subscriptions.conftest import create, drain, patient, settings, topic_subscription
from tests.subscriptions.receiver import Receiver, event_numbers
from tests.waiting import async_wait_until


@pytest.fixture(scope="module", params=BACKENDS)
def migrated_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with database(request.param, tmp_path_factory.mktemp("quietdb")) as url:
        engine = sa.create_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
        yield url


@pytest.fixture
def state(migrated_url: str) -> Iterator[ServerState]:
    """An empty database (no subscription, no cursor) and a server state without a running
    worker (each test drives its own)."""
    s = build_state(settings(migrated_url, subscription_worker=False, subscription_poll_interval=3600.0))
    empty_tables(s.db.engine)
    try:
        yield s
    finally:
        s.db.dispose()


def _cursor(state: ServerState) -> int:
    with state.db.read() as conn:
        position = claims.cursor_position(conn, store.CONSUMER)
        assert position is not None
        return position


def _last_seq(state: ServerState) -> int:
    with state.db.read() as conn:
        return changelog.last_seq(conn)


def test_with_no_subscription_the_cursor_jumps_over_the_changes_unread(state, monkeypatch):
    async def run() -> None:
        worker = new_worker(state, owner="quiet")
        await drain(worker)  # the first round leases the cursor
        await create(state, "Patient", patient("Before"))
        await drain(worker)  # a batch read as always: none counts
        assert worker.matcher.quiet
        for n in range(5):
            await create(state, "Patient", patient(f"Quiet{n}"))
        read: list[int] = []
        real = changelog.read_after

        def spied(conn: Any, position: int, limit: int = 1000) -> Any:
            if conn.engine is state.db.engine:  # not another app's worker in this test process
                read.append(position)
            return real(conn, position, limit)

        monkeypatch.setattr(changelog, "read_after", spied)
        await drain(worker)
        assert read == []  # no change was read
        assert _cursor(state) == _last_seq(state)

    asyncio.run(run())


def test_a_subscription_written_while_quiet_gets_its_events(state):
    receiver = Receiver().start()
    try:

        async def run() -> None:
            worker = new_worker(state, owner="quiet")
            await drain(worker)
            await create(state, "Patient", patient("Before"))
            await drain(worker)
            assert worker.matcher.quiet
            await create(state, "Subscription", topic_subscription(receiver.url, "Patient", "create"))
            await create(state, "Patient", patient("After"))
            await drain(worker)
            assert len(receiver.of_type("handshake")) == 1
            assert event_numbers(receiver) == [1]  # the Patient after the subscription, not the one before
            assert not worker.matcher.quiet

        asyncio.run(run())
    finally:
        receiver.stop()


def test_a_subscription_committed_during_the_quiet_check_is_not_jumped_over(state, monkeypatch):
    """The quiet round reads the newest seq, then whether any subscription counts. Another
    client's Subscription (and a Patient it selects) commits right after the first of the two
    reads: the subscription starts at its own change and gets that Patient's event. (Were the two
    read the other way round, the second would see the change but the first would not: the
    cursor would jump over it, and the subscription start only with its handshake's write,
    missing the Patient.)"""
    receiver = Receiver().start()
    try:

        async def run() -> None:
            loop = asyncio.get_running_loop()
            worker = new_worker(state, owner="quiet")
            await drain(worker)
            await create(state, "Patient", patient("Before"))
            await drain(worker)
            assert worker.matcher.quiet
            await create(state, "Patient", patient("Meanwhile"))
            injected: list[str] = []

            def then_a_subscription(name: str, real: Any) -> Any:
                def read(conn: Any) -> Any:
                    value = real(conn)
                    # the first of the two reads, by this worker (not another app's in this process)
                    if not injected and conn.engine is state.db.engine:
                        injected.append(name)
                        body = topic_subscription(receiver.url, "Patient", "create")
                        asyncio.run_coroutine_threadsafe(create(state, "Subscription", body), loop).result(timeout=30)
                        # and a Patient it selects, before its handshake (which writes the
                        # Subscription again, and would start it too late for this one)
                        asyncio.run_coroutine_threadsafe(create(state, "Patient", patient("Early")), loop).result(timeout=30)
                    return value

                return read

            with monkeypatch.context() as m:
                m.setattr(matcher_module.changelog, "last_seq", then_a_subscription("last_seq", changelog.last_seq))
                m.setattr(matcher_module.store, "any_counting", then_a_subscription("any_counting", store.any_counting))
                await drain(worker)
            assert injected == ["last_seq"]
            await drain(worker)
            assert len(receiver.of_type("handshake")) == 1
            await create(state, "Patient", patient("After"))
            await drain(worker)
            assert event_numbers(receiver) == [1, 2]  # Early and After

        asyncio.run(run())
    finally:
        receiver.stop()


def test_a_quiet_worker_runs_rounds_less_often_but_a_subscription_wakes_it_at_once(state, monkeypatch):
    monkeypatch.setattr(worker_module, "_QUIET_ROUND_GAP_S", 3600.0)
    receiver = Receiver().start()
    try:

        async def run() -> None:
            worker = new_worker(state, owner="quiet", poll_interval=3600.0)
            rounds = 0
            real = worker.run_once

            async def counted() -> bool:
                nonlocal rounds
                rounds += 1
                return await real()

            worker.run_once = counted  # type: ignore[method-assign]
            # on PostgreSQL the LISTEN connection, once up, signals "types not known" (changes may
            # have committed before it listened), which rightly starts a round at once: the
            # rounds are counted only after it
            listening = asyncio.Event()
            real_listen = change_signal.listen

            async def listen(engine: Any, listener: Any, **options: Any) -> None:
                def heard(types: frozenset[str] | None) -> None:
                    listener(types)
                    if types is None:
                        listening.set()

                await real_listen(engine, heard, **options)

            monkeypatch.setattr(change_signal, "listen", listen)
            await drain(worker)
            await create(state, "Patient", patient("Before"))
            worker.start()
            try:
                if state.db.dialect == "postgresql":
                    await asyncio.wait_for(listening.wait(), 30)
                await async_wait_until(lambda: worker.matcher.quiet)
                await asyncio.sleep(0.2)  # the round the listener's start began, if any, ends
                quiet_since = rounds
                for n in range(10):
                    await create(state, "Patient", patient(f"Quiet{n}"))
                await asyncio.sleep(0.3)
                assert rounds - quiet_since <= 1, rounds - quiet_since  # ten commits, at most one round
                started = time.monotonic()
                await create(state, "Subscription", topic_subscription(receiver.url, "Patient", "create"))
                await async_wait_until(lambda: len(receiver.of_type("handshake")) == 1)
                assert time.monotonic() - started < 60  # not the hour-long quiet gap
                await create(state, "Patient", patient("After"))
                await async_wait_until(lambda: event_numbers(receiver) == [1])
            finally:
                await worker.stop()

        asyncio.run(run())
    finally:
        receiver.stop()


def test_a_commit_signal_names_its_types_and_a_waker_can_wait_for_some():
    async def run() -> None:
        every, some = asyncio.Event(), asyncio.Event()
        wake = change_signal.both(change_signal.waker(every), change_signal.waker(some, only=frozenset({"Subscription"})))
        wake(frozenset({"Patient", "Encounter"}))
        assert every.is_set() and not some.is_set()
        wake(frozenset({"Patient", "Subscription"}))
        assert some.is_set()
        some.clear()
        wake(None)  # not known (listening just started): wakes both
        assert some.is_set()

    asyncio.run(run())
    assert change_signal.payload(frozenset({"Patient", "Encounter"})) == "Encounter,Patient"
    assert change_signal.payload(frozenset(f"T{i:05}" for i in range(1000))) == ""  # too long: "not known"
