"""Several workers on one database (each with its own Database and write path, as separate
processes would have), on SQLite and PostgreSQL: no event delivered twice in parallel, one
delivery in flight per subscription, order kept; a worker that died holding leases (the cursor,
a subscription mid-delivery) is taken over once its leases run out, and nothing is lost."""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from fhir_server.app import create_app
from fhir_server.state import build_state
from fhir_server.storage import claims
from fhir_server.subscriptions import store
from fhir_server.subscriptions.setup import new_worker
from fhir_server.timeutil import now_us
from tests.conftest import BACKENDS, database
from tests.subscriptions.conftest import JSON, patient, settings, topic_subscription
from tests.subscriptions.receiver import Receiver, status_of
from tests.waiting import async_wait_until

pytestmark = pytest.mark.slow  # each test starts an app on a fresh database and runs workers


@pytest.fixture(params=BACKENDS)
def quiet(request, tmp_path) -> Iterator[tuple[TestClient, str]]:
    """An app without a subscription worker (the tests run theirs) and its database URL."""
    with database(request.param, tmp_path) as url:
        app = create_app(settings(url, subscription_worker=False))
        with TestClient(app) as client:
            yield client, url


class CountingReceiver(Receiver):
    """Also records, per subscription (query ``s``), how many requests were in flight at once."""

    def __init__(self) -> None:
        super().__init__(delay=0.01)
        self.in_flight: dict[str, int] = defaultdict(int)
        self.most: dict[str, int] = defaultdict(int)
        self.guard = threading.Lock()

    def start(self) -> CountingReceiver:
        super().start()
        assert self._server is not None
        handler = self._server.RequestHandlerClass
        original = handler._any  # type: ignore[attr-defined]
        outer = self

        def counted(h) -> None:
            key = h.path.split("s=")[-1]
            with outer.guard:
                outer.in_flight[key] += 1
                outer.most[key] = max(outer.most[key], outer.in_flight[key])
            try:
                original(h)
            finally:
                with outer.guard:
                    outer.in_flight[key] -= 1

        handler._any = counted  # type: ignore[attr-defined]
        handler.do_POST = counted  # type: ignore[attr-defined]
        return self


def _numbers_by_sub(receiver: Receiver) -> dict[str, list[int]]:
    out: dict[str, list[int]] = defaultdict(list)
    for r in receiver.received:
        if not r.body:
            continue
        st = status_of(r.json())
        if st["type"] == "event-notification":
            sub = st["subscription"]["reference"].rsplit("/", 1)[-1]
            out[sub] += [int(e["event-number"]) for e in st["events"]]
    return out


def test_two_workers_never_deliver_the_same_event(quiet):
    client, url = quiet
    receiver = CountingReceiver().start()
    try:
        subs = []
        for n in range(4):
            r = client.post("/fhir/Subscription", json=topic_subscription(f"{receiver.url}?s={n}", "Patient", "create"), headers=JSON)
            subs.append(r.json()["id"])
        for n in range(15):
            client.post("/fhir/Patient", json=patient(f"P{n}"), headers=JSON)

        async def run() -> None:
            states = [build_state(settings(url)) for _ in range(2)]
            workers = [new_worker(st, owner=f"w{k}").start() for k, st in enumerate(states)]
            try:
                await async_wait_until(
                    lambda: all(len(v) == 15 for v in _numbers_by_sub(receiver).values()) and len(_numbers_by_sub(receiver)) == 4,
                    timeout=60,
                )
            finally:
                for w in workers:
                    await w.stop()
                for st in states:
                    st.db.dispose()

        asyncio.run(run())
        for numbers in _numbers_by_sub(receiver).values():
            assert numbers == list(range(1, 16))  # each event once, in order
        assert max(receiver.most.values()) == 1  # never two requests in flight for one subscription
    finally:
        receiver.stop()


def test_a_dead_workers_leases_run_out_and_nothing_is_lost(quiet):
    client, url = quiet
    receiver = Receiver().start()
    try:
        sub = client.post("/fhir/Subscription", json=topic_subscription(receiver.url, "Patient", "create"), headers=JSON).json()["id"]
        state = build_state(settings(url))
        # a worker "dead" mid-way: it holds the change-log cursor and the subscription's partition
        with state.db.write() as conn:
            assert claims.lease_cursor(conn, store.CONSUMER, "dead", 1_500_000, now_us()) == 0
            claims.want(conn, store.REST_QUEUE, sub, now_us())
            assert [c.partition for c in claims.claim(conn, store.REST_QUEUE, "dead", 1_500_000, now_us())] == [sub]
        for n in range(3):
            client.post("/fhir/Patient", json=patient(f"K{n}"), headers=JSON)

        async def run() -> None:
            worker = new_worker(state, owner="alive").start()
            try:
                await async_wait_until(
                    lambda: (
                        [int(e["event-number"]) for b in receiver.of_type("event-notification") for e in status_of(b)["events"]]
                        == [1, 2, 3]
                    ),
                    timeout=60,
                )
            finally:
                await worker.stop()
                state.db.dispose()

        asyncio.run(run())
        assert len(receiver.of_type("handshake")) == 1
    finally:
        receiver.stop()


def test_cursor_moves_only_for_its_lease_holder(quiet):
    _, url = quiet
    state = build_state(settings(url))
    try:
        now = now_us()
        with state.db.write() as conn:
            assert claims.lease_cursor(conn, "test-consumer", "a", 10_000_000, now, start=5) == 5
            assert claims.lease_cursor(conn, "test-consumer", "b", 10_000_000, now) is None
            claims.advance_cursor(conn, "test-consumer", "a", 5, 9, now)
        with pytest.raises(claims.LostLease), state.db.write() as conn:
            claims.advance_cursor(conn, "test-consumer", "b", 9, 12, now)
        with pytest.raises(claims.LostLease), state.db.write() as conn:
            claims.advance_cursor(conn, "test-consumer", "a", 5, 12, now)  # stale position
        with state.db.write() as conn:
            assert claims.lease_cursor(conn, "test-consumer", "b", 10_000_000, now + 11_000_000) == 9  # expired: taken over
            with pytest.raises(claims.LostLease):
                claims.advance_cursor(conn, "test-consumer", "a", 9, 12, now + 11_000_000)
    finally:
        state.db.dispose()


def test_a_partition_is_claimed_by_one_worker_until_done_and_backs_off_after_failures(quiet):
    _, url = quiet
    state = build_state(settings(url))
    try:
        t = now_us()
        with state.db.write() as conn:
            claims.want(conn, "q", "p1", t)
            claims.want(conn, "q", "p2", t)
            got_a = claims.claim(conn, "q", "a", 5_000_000, t, limit=1)
            got_b = claims.claim(conn, "q", "b", 5_000_000, t, limit=5)
            assert len(got_a) == 1 and len(got_b) == 1 and got_a[0].partition != got_b[0].partition
            assert claims.claim(conn, "q", "c", 5_000_000, t) == []
            claims.want(conn, "q", got_a[0].partition, t)  # new work while leased: not claimable until released
            assert claims.claim(conn, "q", "c", 5_000_000, t) == []
            assert claims.failed(conn, "q", got_a[0].partition, "a", t, retry_at_us=t + 1_000_000, error="x") == 1
            assert claims.claim(conn, "q", "c", 5_000_000, t + 500_000) == []  # backing off
            again = claims.claim(conn, "q", "c", 5_000_000, t + 1_000_001)
            assert [(c.partition, c.failures) for c in again] == [(got_a[0].partition, 1)]
            assert not claims.done(conn, "q", got_b[0].partition, "a", t)  # not a's lease
            assert claims.done(conn, "q", got_b[0].partition, "b", t, next_us=None)
            assert claims.claim(conn, "q", "c", 5_000_000, t + 2_000_000) == []  # nothing wanted any more
    finally:
        state.db.dispose()


def _event_numbers(receiver: Receiver) -> list[int]:
    return [int(e["event-number"]) for b in receiver.of_type("event-notification") for e in status_of(b)["events"]]


def test_events_a_dead_worker_held_are_delivered_without_a_new_change(quiet):
    """The worker that claimed the subscription died with its events waiting; nothing changes
    afterwards. Claiming cleared the partition's wanted time, so only ``claims.revive`` makes it
    due again once the lease ran out (before: the events waited for the next matching change)."""
    client, url = quiet
    receiver = Receiver().start()
    state = build_state(settings(url))
    try:
        sub = client.post("/fhir/Subscription", json=topic_subscription(receiver.url, "Patient", "create"), headers=JSON).json()["id"]
        for n in range(3):
            client.post("/fhir/Patient", json=patient(f"D{n}"), headers=JSON)
        matcher_only = new_worker(state, owner="matcher")

        async def run() -> None:  # one event loop for the state's write path throughout
            while (await matcher_only.matcher.run_once(None))[0]:  # events numbered, partition wanted; nothing claimed
                pass
            with state.db.read() as conn:
                st = store.get(conn, sub)
                assert st is not None and st.events == 3
            with state.db.write() as conn:  # the worker that claims it is killed at once
                assert [c.partition for c in claims.claim(conn, store.REST_QUEUE, "dead", 1_000_000, now_us())] == [sub]
                claims.release_cursor(conn, store.CONSUMER, "matcher")
            worker = new_worker(state, owner="alive").start()
            try:
                await async_wait_until(lambda: _event_numbers(receiver) == [1, 2, 3], timeout=30)
            finally:
                await worker.stop()

        asyncio.run(run())
        assert len(receiver.of_type("handshake")) == 1
    finally:
        state.db.dispose()
        receiver.stop()


def test_a_worker_whose_lease_lapsed_does_not_send_while_another_holds_it(quiet):
    """A worker that stalled past its lease while another worker claimed the subscription must
    not send (two deliveries in flight); with its own lease about to run out it renews first."""
    client, url = quiet
    receiver = Receiver().start()
    state = build_state(settings(url))
    try:
        sub = client.post("/fhir/Subscription", json=topic_subscription(receiver.url, "Patient", "create"), headers=JSON).json()["id"]
        worker = new_worker(state, owner="stalled", lease_seconds=30.0)
        with state.db.write() as conn:
            claims.want(conn, store.REST_QUEUE, sub, now_us())
            assert claims.claim(conn, store.REST_QUEUE, "other", 30_000_000, now_us())[0].partition == sub
        lapsed = claims.Claim(store.REST_QUEUE, sub, 0, now_us() - 1)  # what "stalled" held before "other" took it

        async def run() -> None:  # one event loop for the state's write path throughout
            assert await worker._serve_claim(lapsed) is None
            assert receiver.received == []  # the handshake was not sent: "other" sends it
            with state.db.read() as conn:
                assert claims.partition_state(conn, store.REST_QUEUE, sub)["lease_owner"] == "other"
                assert store.attempts(conn, sub) == []
            with state.db.write() as conn:  # now the stalled worker's own lease, about to run out
                assert claims.done(conn, store.REST_QUEUE, sub, "other", now_us(), next_us=now_us())
                [mine] = claims.claim(conn, store.REST_QUEUE, "stalled", 2_000_000, now_us())
            assert mine.until_us is not None and mine.until_us - now_us() < 10_000_000  # less than an attempt may take
            await worker._serve_claim(mine)

        asyncio.run(run())
        assert len(receiver.of_type("handshake")) == 1
        with state.db.read() as conn:
            assert store.attempts(conn, sub)[0]["outcome"] == "ok"
    finally:
        state.db.dispose()
        receiver.stop()


def test_a_matcher_reads_the_subscriptions_again_when_another_worker_matched_in_between(quiet):
    """A matcher keeps the subscriptions it read between its batches. A subscription created
    while another worker held the change-log cursor was matched and started by that one; when
    the first resumes, it must see the subscription (and number its events), not its old view."""
    client, url = quiet
    states = [build_state(settings(url)) for _ in range(2)]

    async def run() -> str:
        first, second = (new_worker(st, owner=f"w{k}").matcher for k, st in enumerate(states))
        await first.run_once()  # the cursor placed (after what is stored: no subscription yet)
        client.post("/fhir/Patient", json=patient("Before"), headers=JSON)
        assert (await first.run_once())[0] == 1  # its view now: no subscription
        filters = ["family=After"]
        sub = client.post("/fhir/Subscription", json=topic_subscription("http://127.0.0.1:9/x", filters=filters), headers=JSON)
        with states[0].db.write() as conn:
            claims.release_cursor(conn, store.CONSUMER, "w0")
        assert (await second.run_once())[0] >= 1  # the Subscription's creation: started by the other worker
        with states[1].db.write() as conn:
            claims.release_cursor(conn, store.CONSUMER, "w1")
        client.post("/fhir/Patient", json=patient("After"), headers=JSON)
        client.post("/fhir/Patient", json=patient("Other"), headers=JSON)
        assert (await first.run_once())[0] >= 2
        return str(sub.json()["id"])

    try:
        sub_id = asyncio.run(run())
        with states[0].db.read() as conn:
            st = store.get(conn, sub_id)
            assert st is not None and st.events == 1  # the matching Patient only
    finally:
        for st in states:
            st.db.dispose()
