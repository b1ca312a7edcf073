"""The subscription worker: one asyncio task per server process (like the audit flusher).

Each round it (1) lets the :class:`~.matcher.Matcher` turn new changes into numbered events
(only the holder of the cursor lease does) and claim, in that same transaction, the
subscriptions that got events, and (2) claims other due subscription partitions (retries,
heartbeats, events matched by another process; ``storage/claims.py``: one worker per
subscription at a time, in any number of processes and machines) and serves each: the
handshake of a ``requested`` subscription, **all** its undelivered events in order in one
notification (at most ``backport-max-count``, default :data:`DEFAULT_MAX_COUNT`), or a
heartbeat. Every attempt is written to ``subscription_deliveries`` in the transaction that
records its outcome; when more events wait, that transaction keeps the lease and the worker
goes on with the next notification without claiming again. So an event costs two write
transactions (matched and claimed; delivered and recorded), shared through group commit with
whatever else is being written, and a burst of events costs the same two.

A failure backs off exponentially with jitter (at least as long as a ``Retry-After`` asks) and,
after ``FHIR_SUBSCRIPTION_MAX_FAILURES`` in a row, sets the subscription to ``error`` with
``Subscription.error`` (at once for ``410 Gone``); the client re-activates it (status
``requested``). Delivery is at least once: a worker killed mid-delivery leaves its lease to run
out and the next worker sends the same notification again (same ``webhook-id``: a retry covers
the same events as the attempt before it).

It wakes when this process commits a change (``storage/change_signal.py``) and, on PostgreSQL,
when any process does (LISTEN/NOTIFY); when a delivery of its own ends; and when the next
time-driven piece of work is due (a retry, a heartbeat, a lease running out,
``Subscription.end``: read from the database after each idle round). Otherwise it sleeps, at most
``poll_interval`` (1 s): the read-only poll that finds what no signal announces (changes
committed by other SQLite processes, partitions another process made due). An idle server costs
one round of a few reads a second. While no subscription counts (``Matcher.quiet``), commits start
a round at most every ``_QUIET_ROUND_GAP_S``, and its matcher moves the cursor without reading the
changes; a commit that writes a Subscription (the signal names the types) starts one at once.

Leases: a worker serves a claim only while it holds the partition's lease. Before each attempt
it makes sure the lease outlasts the attempt (whose time is bounded in all,
``delivery.send``), renewing it if not, and stops when the lease went to another worker: never
two deliveries in flight for one subscription. A partition whose holder died (or stalled past
its lease, and whose recording found the lease gone) is due again once the lease ran out
(``claims.revive``): its events are delivered by the next worker, not left waiting for a new
change. The worker's own writes (status changes of the Subscription
resource, the delivery log) go through the pipeline's write path (``Pipeline.writer``) as the
server, so they are in the change log like any write.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import aiohttp
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from fhir_server import jsonio
from fhir_server.errors import FhirError
from fhir_server.service.access import OPEN, Principal
from fhir_server.service.pipeline import Interaction, Pipeline
from fhir_server.storage import change_signal, claims
from fhir_server.storage import repository as repo
from fhir_server.storage.db import Database
from fhir_server.storage.work_tables import work_partitions as wp
from fhir_server.subscriptions import notify, store
from fhir_server.subscriptions.access import subscriber
from fhir_server.subscriptions.delivery import Sent, new_client, send
from fhir_server.subscriptions.endpoints import Network
from fhir_server.subscriptions.matcher import Matcher, Plan
from fhir_server.subscriptions.store import Event, State
from fhir_server.subscriptions.websocket import SEND_TIMEOUT, Binding, Hub
from fhir_server.timeutil import now_us, to_instant

log = logging.getLogger("fhir_server.subscriptions")
T = TypeVar("T")
_US = 1_000_000

#: events per notification when the subscription does not say (``backport-max-count``)
DEFAULT_MAX_COUNT = 100
#: the longest ``Retry-After`` honoured (seconds): a receiver cannot park a subscription for months
RETRY_AFTER_MAX = 86_400.0
#: how often the worker looks for subscriptions whose ``Subscription.end`` has passed (µs)
_END_SWEEP_US = 1_000_000
#: how often the abandoned-lease check runs (a killed worker's partitions are rare; reading for
#: them every round, over every partition, cost a busy server ~5 % at 1,000 subscriptions)
_REVIVE_EVERY_US = 500_000
#: the shortest time between the starts of two matching rounds (see ``_run``)
_ROUND_GAP_S = 0.02
#: the same while no subscription counts and no delivery runs: a round then only moves the
#: cursor, and a round per commit (each with its reads and a write transaction) was ~8 % of a
#: one-client ingest on SQLite (docs/performance.md, session 17), and a round every 0.25 s still
#: ~5 % (session 19: its statements are built on the event loop, between the requests' work).
#: Once a second, as the idle poll. A commit that writes a Subscription still starts a round at
#: once (``_wake_now``)
_QUIET_ROUND_GAP_S = 1.0
#: a commit of these types starts a round without waiting for the gap
_WAKE_NOW_TYPES = frozenset({"Subscription"})


class SubscriptionWorker:
    def __init__(
        self,
        db: Database,
        pipeline: Pipeline,
        *,
        base: str,
        allowed: tuple[Network, ...],
        token_mode: bool,
        poll_interval: float = 1.0,
        lease_seconds: float = 30.0,
        max_failures: int = 10,
        retry_base: float = 1.0,
        retry_max: float = 3600.0,
        concurrency: int = 16,
        owner: str | None = None,
    ) -> None:
        self.db = db
        self.pipeline = pipeline
        self.base = base.rstrip("/")
        self.allowed = allowed
        self.token_mode = token_mode
        self.poll_interval = poll_interval
        self.lease_us = int(lease_seconds * _US)
        self.max_failures = max_failures
        self.retry_base = retry_base
        self.retry_max = retry_max
        self.concurrency = concurrency
        self.owner = owner or claims.worker_owner()
        self.matcher = Matcher(
            db, pipeline.writes, pipeline.services.search, self.owner, base=self.base, token_mode=token_mode, lease_us=self.lease_us
        )
        #: the websocket bindings this process holds (None: it serves no websocket)
        self.hub: Hub | None = None
        self._client: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._wake = asyncio.Event()
        #: ends the gap between two rounds early (a Subscription written, a socket bound)
        self._wake_now = asyncio.Event()
        self._swept_us = 0
        self._revived_us = 0

    # -- the loop ------------------------------------------------------------------------
    def start(self) -> SubscriptionWorker:
        loop = asyncio.get_running_loop()
        wake = change_signal.both(change_signal.waker(self._wake), change_signal.waker(self._wake_now, only=_WAKE_NOW_TYPES))
        self._unsubscribe = change_signal.subscribe(self.db.engine, wake)
        self._listener = loop.create_task(change_signal.listen(self.db.engine, wake))
        self._task = loop.create_task(self._run(), name=f"subscriptions-{self.owner}")
        return self

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        for task in (self._task, self._listener):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._task = self._listener = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        # the next process (a restart) matches at once instead of waiting for the lease to run out
        with contextlib.suppress(Exception):
            await self.pipeline.writes.run(lambda conn: claims.release_cursor(conn, store.CONSUMER, self.owner), alone=True)
        if self._client is not None:
            await self._client.close()
            self._client = None

    def wake(self) -> None:
        """Run a round now (a socket was bound, a subscription written in this process)."""
        self._wake.set()
        self._wake_now.set()

    async def _run(self) -> None:
        failing = False
        started = 0.0
        while True:
            # rounds at most every _ROUND_GAP_S: under a stream of writes each commit signal would
            # start a round for a handful of changes, and a round's fixed cost (its reads and the
            # cursor's write) then took up to a third of a busy server (PostgreSQL, 100 filtered
            # subscriptions); a few milliseconds later the same round takes all of them
            quiet = self.matcher.quiet and not self._tasks
            gap = started + (_QUIET_ROUND_GAP_S if quiet else _ROUND_GAP_S) - time.monotonic()
            if gap > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(gap):
                        await self._wake_now.wait()
            self._wake_now.clear()
            started = time.monotonic()
            try:
                busy = await self.run_once()
                failing = False
            except asyncio.CancelledError:
                raise
            except Exception:  # the database is unreachable or not migrated yet (logged once per run of failures)
                if not failing:
                    log.exception("subscription worker: a round failed (retrying every 5 s)")
                failing = True
                await asyncio.sleep(5.0)
                continue
            if not busy:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow the task's
                # cancellation (CPython gh-86296), and stop() would then wait for it forever
                idle = await self._idle_seconds()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(idle):
                        await self._wake.wait()
                self._wake.clear()

    async def _idle_seconds(self) -> float:
        """How long an idle worker may sleep: until the next time-driven work, at most the poll
        interval (a signal wakes it earlier)."""
        now = now_us()
        due, end = await self.db.read_off_loop(
            lambda conn: (claims.next_due_us(conn, [store.REST_QUEUE, store.WS_QUEUE], now), store.next_end_us(conn))
        )
        if end is not None:  # the sweep runs at most once a second
            end = max(end, self._swept_us + _END_SWEEP_US)
            due = end if due is None else min(due, end)
        if due is None:
            return self.poll_interval
        return max(0.0, min(self.poll_interval, (due - now) / _US))

    async def run_once(self) -> bool:
        """One round: match new changes (claiming what got events), start serving due
        subscriptions. Whether it did anything."""
        plan = Plan(self.owner, self.lease_us, max(self.concurrency - len(self._tasks), 0), frozenset(self.bound()))
        matched, got = await self.matcher.run_once(plan)
        self._start(got)
        await self._revive()
        started = await self._claim_and_serve()
        ended = await self._end_subscriptions()
        return bool(matched or got or started or ended)

    async def _end_subscriptions(self) -> int:
        """Turn off the subscriptions whose ``Subscription.end`` has passed (at most a second
        late, whether or not they have anything to deliver or a socket bound here)."""
        now = now_us()
        if now - self._swept_us < _END_SWEEP_US:
            return 0
        self._swept_us = now
        ending = await self.db.read_off_loop(lambda conn: store.ending(conn, now))
        for sub_id in ending:
            await self.write(functools.partial(self._end_in, sub_id=sub_id, now=now))
        return len(ending)

    def _end_in(self, conn: Connection, *, sub_id: str, now: int) -> None:
        st = store.get(conn, sub_id)
        if st is not None and st.status != "off" and st.spec.end_us is not None and st.spec.end_us <= now:
            self._status_in(conn, st, "off", None, None)

    async def wait_idle(self) -> None:
        """Wait for the deliveries started so far (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def bound(self) -> list[str]:
        """The websocket subscriptions this process may serve (it holds their sockets)."""
        return self.hub.bound() if self.hub is not None else []

    # -- claiming ------------------------------------------------------------------------
    async def _due(self, queue: str, only: list[str] | None) -> bool:
        stmt = wp.select().with_only_columns(wp.c.partition).where(claims.claimable(queue, now_us())).limit(1)
        if only is not None:
            stmt = stmt.where(wp.c.partition.in_(only))
        return await self.db.read_off_loop(lambda conn: conn.execute(stmt).first() is not None)

    async def _revive(self) -> None:
        """Partitions whose holder's lease ran out without a word (killed, or stalled and gone):
        due again, so their waiting events are delivered without waiting for a new change."""
        now = now_us()
        if now - self._revived_us < _REVIVE_EVERY_US:
            return
        self._revived_us = now
        queues = [store.REST_QUEUE, store.WS_QUEUE]
        stmt = wp.select().with_only_columns(wp.c.partition).where(sa.or_(*(claims.abandoned(q, now) for q in queues))).limit(1)
        if not await self.db.read_off_loop(lambda conn: conn.execute(stmt).first() is not None):
            return
        await self.write(lambda conn: sum(claims.revive(conn, q, now) for q in queues))

    async def _claim_and_serve(self) -> int:
        started = 0
        bound = self.bound()
        for queue, only in ((store.REST_QUEUE, None), (store.WS_QUEUE, bound)):
            free = self.concurrency - len(self._tasks)
            if free <= 0:
                break
            if only is not None and not only:
                continue
            if not await self._due(queue, only):  # read-only: no write lock unless there is work
                continue
            got = await self.write(self._claimer(queue, only, free))
            self._start(got)
            started += len(got)
        return started

    def _start(self, got: list[claims.Claim]) -> None:
        for claim in got:
            task = asyncio.get_running_loop().create_task(self._serve(claim))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            task.add_done_callback(lambda _: self._wake.set())  # a slot is free: claim what waits

    def _claimer(self, queue: str, only: list[str] | None, limit: int) -> Callable[[Connection], list[claims.Claim]]:
        return lambda conn: claims.claim(conn, queue, self.owner, self.lease_us, now_us(), limit, only=only)

    async def write(self, work: Callable[[Connection], T]) -> T:
        """A write of the worker: through the pipeline's write path, as the server, in the next
        group transaction (the works are repeatable: only database writes on ``conn``)."""
        i = Interaction("update", self.base, OPEN, "Subscription")
        return await self.pipeline.writer(i)(work)

    # -- serving one subscription --------------------------------------------------------
    async def _serve(self, claim: claims.Claim) -> None:
        current: claims.Claim | None = claim
        try:
            while current is not None:  # the lease is kept while events wait: no new claim per notification
                current = await self._serve_claim(current)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.write(lambda conn: claims.release(conn, claim.queue, claim.partition, self.owner, now_us())))
            raise
        except Exception:
            log.exception("subscription %s: serving failed", claim.partition)
            now = now_us()
            await self.write(
                lambda conn: claims.failed(
                    conn, claim.queue, claim.partition, self.owner, now, retry_at_us=now + 5 * _US, error="internal error (logged)"
                )
            )

    async def _serve_claim(self, claim: claims.Claim) -> claims.Claim | None:
        """Serve one claimed subscription once; the claim again when this worker kept the lease
        to send the next notification."""
        sub_id = claim.partition

        def read(conn: Connection) -> tuple[State | None, Principal | None, list[Event]]:
            st = store.get(conn, sub_id)
            if st is None:
                return None, None, []
            principal = subscriber(conn, st.client_id, token_mode=self.token_mode)
            return st, principal, store.events(conn, sub_id, st.delivered + 1, limit=self._batch_limit(conn, claim, st))

        st, principal, events = await self.db.read_off_loop(read)
        now = now_us()
        if st is None:
            await self.write(lambda conn: claims.drop(conn, claim.queue, sub_id))
            return None
        if st.status in ("off", "error"):
            await self.write(lambda conn: claims.set_paused(conn, claim.queue, sub_id, True))
            return None
        spec = st.spec
        if spec.end_us is not None and now >= spec.end_us:
            await self.write(lambda conn: self._status_in(conn, st, "off", None, claim))
            return None
        if principal is None or not principal.readable(spec.res_type):
            text = f"The subscribing client was revoked or may no longer read {spec.res_type}"
            await self.write(lambda conn: self._status_in(conn, st, "error", text, claim))
            return None
        binding = None
        if spec.channel == "websocket":
            binding = self.hub.binding(sub_id, st.ws_binding) if self.hub is not None else None
            if binding is None:  # no socket of its latest binding here (any more): whoever holds it serves it
                await self.write(lambda conn: claims.release(conn, claim.queue, sub_id, self.owner, now_us()))
                return None
            if not binding.handshaken:  # a new binding: its handshake first, then what it has not had
                return await self._notify(claim, st, "handshake", [], binding)
        elif st.status == "requested":
            if spec.kind == "criteria":  # R4 has no handshake: active at once
                await self.write(lambda conn: self._status_in(conn, st, "active", None, claim, next_us=now))
                return None
            return await self._notify(claim, st, "handshake", [])
        if events:
            return await self._notify(claim, st, "event-notification", events, binding)
        heartbeat_at = self._heartbeat_at(st)
        if heartbeat_at is not None and heartbeat_at <= now:
            return await self._notify(claim, st, "heartbeat", [], binding)
        await self.write(lambda conn: claims.done(conn, claim.queue, sub_id, self.owner, now_us(), next_us=self._next_at(st)))
        return None

    def _batch_limit(self, conn: Connection, claim: claims.Claim, st: State) -> int:
        """How many events the next notification carries: all that wait, up to max-count; an R4
        payload is one resource per request. A retry carries the same events as the failed
        attempt before it (the same notification: the same ``webhook-id``)."""
        spec = st.spec
        if spec.kind == "criteria" and spec.payload is not None:
            return 1
        limit = spec.max_count or DEFAULT_MAX_COUNT
        if claim.failures:
            last = store.attempts(conn, st.sub_id, 1)
            if last and last[0]["kind"] == "event-notification" and last[0]["first_event"] == st.delivered + 1:
                limit = min(limit, int(last[0]["last_event"]) - st.delivered)
        return max(limit, 1)

    def _heartbeat_at(self, st: State, sent_us: int | None = None) -> int | None:
        if st.spec.kind != "topic" or st.spec.heartbeat_s is None:
            return None
        last = sent_us if sent_us is not None else (st.last_sent_us or now_us())
        return last + st.spec.heartbeat_s * _US

    def _next_at(self, st: State, sent_us: int | None = None) -> int | None:
        """When the subscription wants a worker again with nothing new: its next heartbeat."""
        return self._heartbeat_at(st, sent_us)

    def _timeout(self, st: State) -> float:
        limit = self.lease_us / _US / 3  # an attempt ends well inside the lease
        return min(float(st.spec.timeout_s or 10), limit)

    async def _notify(
        self, claim: claims.Claim, st: State, kind: str, events: list[Event], binding: Binding | None = None
    ) -> claims.Claim | None:
        first = events[0].number if events else None
        last = events[-1].number if events else None
        # handshakes and heartbeats: one id per version of the state, stable across retries
        msg_id = notify.notification_id(st.sub_id, kind, first, st.last_sent_us if kind == "heartbeat" else st.delivered, last)
        method, url, body, content_type = await self._request(st, kind, events)
        started = now_us()
        timestamp = started // _US
        headers = {h.split(":", 1)[0].strip(): h.split(":", 1)[1].strip() for h in st.secrets.headers}
        headers.update(notify.webhook_headers(msg_id, timestamp, body or b"", st.secrets.secret))
        if content_type:
            headers["Content-Type"] = content_type
        held = await self._hold(claim, SEND_TIMEOUT if binding is not None else self._timeout(st))
        if held is None:
            log.info("subscription %s: the lease went to another worker; it delivers", st.sub_id)
            return None
        claim = held
        if binding is not None:
            sent = await self._to_socket(binding, body or b"")
            if sent.ok and kind == "handshake":
                binding.handshaken = True
        else:
            assert url is not None
            sent = await send(self._http(), url, self.allowed, method=method, headers=headers, body=body, timeout=self._timeout(st))
        finished = now_us()
        attempt = claim.failures + 1
        entry = {
            "sub_id": st.sub_id,
            "notification_id": msg_id,
            "kind": kind,
            "first_event": first,
            "last_event": last,
            "attempt": attempt,
            "started_us": started,
            "duration_us": finished - started,
            "http_status": sent.status,
            "outcome": "ok" if sent.ok else ("refused" if sent.refused else "failed"),
            "error": sent.error,
        }
        if sent.ok:
            kept = await self.write(lambda conn: self._delivered_in(conn, held, st, kind, events, entry, finished))
            return claims.Claim(claim.queue, claim.partition, 0, finished + self.lease_us) if kept else None
        log.info("subscription %s: %s attempt %d failed: %s", st.sub_id, kind, attempt, sent.error)
        if binding is not None:
            # the socket is gone: not the subscription's failure; its next binding (here or
            # elsewhere) gets what this one did not
            await self.write(lambda conn: self._socket_lost_in(conn, claim, entry, finished))
        else:
            await self.write(lambda conn: self._failed_in(conn, claim, st, entry, sent, finished))
        return None

    async def _hold(self, claim: claims.Claim, timeout: float) -> claims.Claim | None:
        """The claim, with a lease that outlasts an attempt of ``timeout`` seconds (renewed when
        it would not); None when the lease is no longer this worker's (do not send)."""
        margin = int(timeout * _US) + min(self.lease_us // 10, 5 * _US)
        if claim.until_us is not None and now_us() + margin < claim.until_us:
            return claim

        def renew(conn: Connection) -> claims.Claim | None:
            now = now_us()
            if not claims.renew(conn, claim.queue, claim.partition, self.owner, self.lease_us, now):
                return None
            return claims.Claim(claim.queue, claim.partition, claim.failures, now + self.lease_us)

        return await self.write(renew)

    async def _request(self, st: State, kind: str, events: list[Event]) -> tuple[str, str | None, bytes | None, str | None]:
        """(method, URL, body, content type) of a notification."""
        spec = st.spec
        bodies: dict[tuple[str, str, int], bytes | None] = {}
        if spec.content == "full-resource" and events:
            keys = [(e.res_type, e.res_id, e.version) for e in events]
            rows = await self.db.read_off_loop(lambda conn: repo.get_versions(conn, keys))
            bodies = {k: rows[k].body if k in rows else None for k in keys}
        if spec.kind == "criteria":
            # R4 rest-hook: no payload -> one empty POST for every waiting event (the client
            # searches again); a payload -> PUT [endpoint]/[type]/[id] of one resource
            e = events[0]
            body = bodies.get((e.res_type, e.res_id, e.version))
            if spec.payload is None or body is None:
                return "POST", spec.endpoint, None, None
            return "PUT", f"{(spec.endpoint or '').rstrip('/')}/{e.res_type}/{e.res_id}", body, spec.payload
        status = st.status  # a rest-hook handshake: requested (active once it succeeded)
        total = st.events
        body = notify.notification_bundle(spec.base or self.base, st.sub_id, spec, status, kind, total, events, bodies)
        return "POST", spec.endpoint, body, spec.payload or notify_content_type()

    def _http(self) -> aiohttp.ClientSession:
        if self._client is None:
            self._client = new_client()
        return self._client

    async def _to_socket(self, binding: Binding, body: bytes) -> Sent:
        if self.hub is None or not await self.hub.send(binding, body.decode()):
            return Sent(None, "the websocket closed")
        return Sent(200)

    # -- recording (inside the worker's write transactions) -------------------------------
    def _delivered_in(
        self, conn: Connection, claim: claims.Claim, st: State, kind: str, events: list[Event], entry: dict[str, Any], now: int
    ) -> bool:
        """Record a success; True when the lease was kept because more events wait."""
        store.log_attempt(conn, **entry)
        store.mark_sent(conn, st.sub_id, events[-1].number if events else None, now)
        if kind == "handshake" and st.status == "requested":
            self._status_in(conn, st, "active", None, claim, next_us=now)
            return False
        delivered = events[-1].number if events else st.delivered
        if delivered < _events_total(conn, st.sub_id):
            # False: the lease ran out meanwhile, whoever holds it now goes on
            return claims.renew(conn, claim.queue, st.sub_id, self.owner, self.lease_us, now)
        claims.done(conn, claim.queue, st.sub_id, self.owner, now, next_us=self._next_at(st, now))
        return False

    def _socket_lost_in(self, conn: Connection, claim: claims.Claim, entry: dict[str, Any], now: int) -> None:
        store.log_attempt(conn, **entry)
        claims.release(conn, claim.queue, claim.partition, self.owner, now)

    def _failed_in(self, conn: Connection, claim: claims.Claim, st: State, entry: dict[str, Any], sent: Sent, now: int) -> None:
        store.log_attempt(conn, **entry)
        delay = claims.backoff_seconds(claim.failures, self.retry_base, self.retry_max)
        if sent.retry_after is not None:  # the receiver said when: not before (a day at most)
            delay = max(delay, min(sent.retry_after, RETRY_AFTER_MAX))
        failures = claims.failed(conn, claim.queue, st.sub_id, self.owner, now, retry_at_us=now + int(delay * _US), error=sent.error or "")
        if failures is None:
            return  # the lease ran out meanwhile: its new holder decides
        if sent.status == 410:  # Gone: the endpoint says it will never take notifications again
            self._status_in(conn, st, "error", f"The endpoint answered 410 Gone at {to_instant(now)}", None)
        elif failures >= self.max_failures:
            text = f"Delivery failed {failures} times in a row; last: {sent.error} at {to_instant(now)}"
            self._status_in(conn, st, "error", text, None)

    def _status_in(
        self, conn: Connection, st: State, status: str, error: str | None, claim: claims.Claim | None, *, next_us: int | None = None
    ) -> None:
        """Set the Subscription resource's status (and ``error``) and the subscription's state."""
        resources = self.pipeline.services.resources
        try:
            current = resources.read_in(conn, "Subscription", st.sub_id, for_update=True)
        except FhirError:
            return  # deleted meanwhile
        assert current.body is not None
        resource = jsonio.loads(current.body)
        resource["status"] = status
        if error is not None:
            resource["error"] = error
        elif status == "active":
            resource.pop("error", None)
        resources.update_in(conn, "Subscription", st.sub_id, resource)
        now = now_us()
        store.set_status(conn, st.sub_id, status, now)
        queue = store.queue_of(st.spec)
        if claim is not None:
            claims.done(conn, queue, st.sub_id, self.owner, now, next_us=next_us)
        claims.set_paused(conn, queue, st.sub_id, status in ("error", "off"), wanted_us=next_us)


def notify_content_type() -> str:
    return "application/fhir+json"


def _events_total(conn: Connection, sub_id: str) -> int:
    st = store.get(conn, sub_id)
    return st.events if st is not None else 0
