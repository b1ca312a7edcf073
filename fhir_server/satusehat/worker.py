"""The SATUSEHAT sync worker: one asyncio task per server process (like the subscription worker).

Each round it (1) turns new change-log rows into sync items (only the holder of the ``satusehat``
cursor lease does; the cursor moves by compare-and-set in the transaction that stores the items,
so every committed change is seen exactly once across restarts and machines), and (2) claims due
partitions (one patient of one facility, or one Location) through ``storage/claims.py`` and sends
their pending items in order: Location, Encounter, Condition, Observation, Procedure. A partition
is held by one worker at a time, so a resource is never sent by two workers in parallel.

Sending one item: the resource as stored now; held (not sent) when SATUSEHAT's rules would refuse
it (``mappings.satusehat.hold_reason``); Patient and Practitioner resolved to IHS numbers by NIK
(cached; a miss is trusted for ``negative_ttl``); waiting while a parent (Encounter, Location) has
no SATUSEHAT id. A create is marked ``in_doubt`` in the database *before* the POST: if the answer
is lost (timeout, dropped connection, the worker killed), the next attempt first looks the
resource up by its identifier and adopts what it finds, so nothing is created twice (also after a
duplicate refusal, rule 20002). Network errors, 408, 429 (Retry-After) and 5xx back the partition
off exponentially (capped); other 4xx fail the item with SATUSEHAT's OperationOutcome and rule
numbers kept, not retried until the resource changes or someone retries it.

Every write of the worker goes through the pipeline's write path as the server (``Pipeline.writer``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.engine import Connection

from fhir_server import jsonio
from fhir_server.satusehat import store
from fhir_server.satusehat.client import SatusehatClient, first_id
from fhir_server.satusehat.facility import Facility
from fhir_server.service.access import OPEN
from fhir_server.service.pipeline import Interaction, Pipeline
from fhir_server.storage import changelog, claims
from fhir_server.storage import repository as repo
from fhir_server.storage.db import Database
from fhir_server.storage.work_tables import work_partitions as wp
from fhir_server.timeutil import now_us, to_instant
from mappings import satusehat as ss
from mappings import systems

log = logging.getLogger("fhir_server.satusehat")
T = TypeVar("T")
_US = 1_000_000
#: changes turned into items per write transaction (kept short: see ``ingest``)
_INGEST_CHUNK = 16
_ORDER = {t: i for i, t in enumerate(ss.SYNCED_TYPES)}
#: items of a partition whose creates are marked in doubt together and whose outcomes are written
#: together: one short write transaction per chunk rather than two per item (docs/satusehat.md)
CHUNK = 25
DELETED = "deleted locally; the sync does not delete in SATUSEHAT"


#: what one change does to the items: a new version noted, or another write (see ``_plan``)
_Plan = store.Noted | Callable[[Connection, int], None]


def _seen(item: store.Item | None, version: int) -> bool:
    """Whether the item has this version already (a replayed batch): not noted again."""
    return item is not None and item.version >= version and item.status != "not-applicable"


@dataclass(frozen=True)
class _Retry:
    """A transient failure: the partition backs off (at least ``after`` seconds when given)."""

    error: str
    after: float | None = None


class _Stop(Exception):
    """The lease on the partition was lost: stop working on it."""


@dataclass(frozen=True)
class _Outcome:
    """An outcome on an item, written by the round's next ``_record`` (``_write_outcomes``)."""

    item: store.Item
    values: dict[str, Any]
    #: sent: SATUSEHAT has this local version (items waiting for it are requeued)
    sent_version: int | None = None
    #: a Condition just created in SATUSEHAT: its Encounter may list it as a diagnosis
    condition: dict[str, Any] | None = None


@dataclass
class _Round:
    """One claimed partition being served: outcomes noted but not yet written (``_record``
    writes them together), what this round learnt, and when the lease was last renewed."""

    claim: claims.Claim
    renewed_us: int
    outcomes: list[_Outcome | Callable[[Connection, int], None]] = dataclasses.field(default_factory=list)
    #: "Encounter/e1" -> its SATUSEHAT id, "Patient/p1" -> its IHS number (synced or looked up now)
    known: dict[str, str] = dataclasses.field(default_factory=dict)
    #: (kind, NIK) -> (IHS or None, when asked): SATUSEHAT's answers not yet in the cache table
    asked: dict[tuple[str, str], tuple[str | None, int]] = dataclasses.field(default_factory=dict)
    #: "Encounter/e1" -> (held | failed, why): outcomes of this round not yet written
    noted: dict[str, tuple[str, str | None]] = dataclasses.field(default_factory=dict)
    #: items this round marked in doubt before sending them (never sent before: no look-up)
    marked: set[str] = dataclasses.field(default_factory=set)


class SatusehatWorker:
    def __init__(
        self,
        db: Database,
        pipeline: Pipeline,
        facilities: list[Facility],
        *,
        base: str,
        poll_interval: float = 0.5,
        lease_seconds: float = 60.0,
        retry_base: float = 1.0,
        retry_max: float = 300.0,
        negative_ttl: float = 86400.0,
        timeout: float = 30.0,
        concurrency: int = 8,
        batch_size: int = 500,
        owner: str | None = None,
    ) -> None:
        self.db = db
        self.pipeline = pipeline
        self.facilities = {f.name: f for f in facilities}
        self.base = base.rstrip("/")
        self.poll_interval = poll_interval
        self.lease_us = int(lease_seconds * _US)
        self.retry_base = retry_base
        self.retry_max = retry_max
        self.negative_ttl_us = int(negative_ttl * _US)
        self.timeout = min(timeout, lease_seconds / 3)  # a call ends well inside the lease
        self.concurrency = concurrency
        self.batch_size = batch_size
        self.owner = owner or claims.worker_owner()
        self.clients = {f.name: SatusehatClient(f, timeout=self.timeout) for f in facilities}
        self._tasks: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    # -- the loop ------------------------------------------------------------------------
    def start(self) -> SatusehatWorker:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"satusehat-{self.owner}")
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for client in self.clients.values():
            await client.aclose()

    def wake(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        failing = False
        while True:
            try:
                busy = await self.run_once()
                failing = False
            except asyncio.CancelledError:
                raise
            except Exception:  # the database is unreachable or not migrated yet
                if not failing:
                    log.exception("satusehat worker: a round failed (retrying every 5 s)")
                failing = True
                await asyncio.sleep(5.0)
                continue
            if not busy:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow the task's
                # cancellation (CPython gh-86296), and stop() would then wait for it forever
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.poll_interval):
                        await self._wake.wait()
                self._wake.clear()

    async def run_once(self) -> bool:
        """One round; whether more work is there right away (a full batch of changes). Otherwise
        the loop waits a poll interval, so changes are read in batches rather than after every
        write of the server (the cost to local writes, docs/satusehat.md)."""
        ingested = await self.ingest()
        await self._claim_and_serve()
        return ingested >= self.batch_size

    @property
    def busy(self) -> bool:
        """Whether partitions are being served right now."""
        return bool(self._tasks)

    async def wait_idle(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _write(self, work: Callable[[Connection], T], *, alone: bool = True) -> T:
        """A write of the worker: through the pipeline's write path, as the server. ``alone=False``
        for the small per-item writes: they share group commits with other partitions' (a work that
        raises rolls the group back and each is run again alone, so they must be repeatable: they are
        database-only)."""
        i = Interaction("update", self.base, OPEN, "Encounter")
        return await self.pipeline.writer(i)(work, alone=alone)

    # -- (1) change log -> items -----------------------------------------------------------
    async def ingest(self) -> int:
        """Turn one batch of changes into items; the number of changes consumed."""
        with self.db.read() as conn:
            known = claims.cursor_position(conn, store.CONSUMER)
            if known is not None and changelog.last_seq(conn) <= known:
                return 0
        now = now_us()
        position = await self._write(lambda conn: claims.lease_cursor(conn, store.CONSUMER, self.owner, self.lease_us, now))
        if position is None:
            return 0
        with self.db.read() as conn:
            changes = changelog.read_after(conn, position, self.batch_size)
        if not changes:
            return 0
        latest: dict[tuple[str, str], changelog.Change] = {}
        for c in changes:
            if c.res_type in ss.SYNCED_TYPES or c.res_type == "Patient":
                latest[(c.res_type, c.res_id)] = c
        plans = {c.seq: self._plan(c) for c in latest.values()}
        # short write transactions: on SQLite the server's own writes wait for each one (a batch
        # of 500 changes in one transaction held the lock for ~150 ms); the cursor moves with each
        # chunk, so a worker stopped between two chunks resumes after the last one written
        for first in range(0, len(changes), _INGEST_CHUNK):
            chunk = changes[first : first + _INGEST_CHUNK]
            todo = [plan for c in chunk if (plan := plans.get(c.seq)) is not None]
            # shares a group commit with the partitions' outcome writes (it is database-only, so it
            # can run again alone if the group rolls back)
            await self._write(functools.partial(self._ingest_in, old=position, new=chunk[-1].seq, plans=todo), alone=False)
            position = chunk[-1].seq
        return len(changes)

    def _ingest_in(self, conn: Connection, *, old: int, new: int, plans: list[_Plan]) -> None:
        t = now_us()
        claims.advance_cursor(conn, store.CONSUMER, self.owner, old, new, t)
        notes = [p for p in plans if isinstance(p, store.Noted)]
        # the common case (a new version to send) in three statements for the whole chunk
        items = store.by_keys(conn, [(n.res_type, n.res_id) for n in notes])
        fresh = [n for n in notes if not _seen(items.get((n.res_type, n.res_id)), n.version)]
        store.noted_many(conn, fresh, t)
        claims.want_many(conn, store.QUEUE, sorted({n.partition for n in fresh}), t)
        for plan in plans:
            if not isinstance(plan, store.Noted):
                plan(conn, t)

    def _plan(self, c: changelog.Change) -> _Plan | None:
        """What one change does to the items (decided outside the write transaction)."""
        row = repo.read_current(self.db, c.res_type, c.res_id)
        resource = jsonio.loads(row.body) if row is not None and not row.deleted and row.body else None
        if c.res_type == "Patient":
            # a Patient changed (got its NIK?): its held items are tried again
            if resource is None:
                return None
            partitions = [f"{name}:Patient/{c.res_id}" for name in self.facilities]

            def patient(conn: Connection, now: int) -> None:
                for partition in partitions:
                    store.requeue(conn, store.in_partition(conn, partition, ("held",)), now)

            return patient
        if resource is None:

            def deleted(conn: Connection, now: int) -> None:
                item = store.get(conn, c.res_type, c.res_id)
                if item is not None:
                    store.update(conn, item, now, status="not-applicable", last_error=DELETED)

            return deleted
        version = row.version if row is not None else c.version
        facility = self._facility_for(resource)
        own = c.res_type == "Organization" and not ss.is_sub_unit(resource)
        if own or facility is None:
            why_not = (
                "an Organization without partOf is a facility, which SATUSEHAT has already: not sent"
                if own
                else "no SATUSEHAT facility is configured for its organization"
            )

            def elsewhere(conn: Connection, now: int) -> None:
                store.noted(conn, c.res_type, c.res_id, version, "-", f"-:{c.res_type}/{c.res_id}", now, status="not-applicable")
                item = store.get(conn, c.res_type, c.res_id)
                if item is not None:
                    store.update(conn, item, now, last_error=why_not)

            return elsewhere
        patient_id = ss.patient_of(resource)
        owner_ref = f"Patient/{patient_id}" if patient_id and c.res_type != "Location" else f"{c.res_type}/{c.res_id}"
        return store.Noted(c.res_type, c.res_id, version, facility, f"{facility}:{owner_ref}")

    def _facility_for(self, resource: dict[str, Any]) -> str | None:
        """The facility a resource goes to: by its (or its Encounter's) organization when several
        are configured; the environment's facility takes whatever no other one claims."""
        if len(self.facilities) == 1 and next(iter(self.facilities.values())).local_org is None:
            return next(iter(self.facilities))
        org = self._organization_of(resource)
        for f in self.facilities.values():
            if f.local_org is not None and org == f.local_org:
                return f.name
        return next((f.name for f in self.facilities.values() if f.local_org is None), None)

    def _organization_of(self, resource: dict[str, Any], depth: int = 0) -> str | None:
        t = resource.get("resourceType")
        if t == "Organization":  # a sub-unit belongs to the facility its partOf chain reaches
            parent = ss.local_ref(resource.get("partOf"))
            if parent is None or parent[0] != "Organization" or depth > 10:
                return None
            if any(f.local_org == parent[1] for f in self.facilities.values()):
                return parent[1]
            row = repo.read_current(self.db, "Organization", parent[1])
            above = jsonio.loads(row.body) if row is not None and not row.deleted and row.body else None
            if above is None or not ss.is_sub_unit(above):
                return parent[1]
            return self._organization_of(above, depth + 1)
        key = {"Encounter": "serviceProvider", "Location": "managingOrganization"}.get(str(t))
        if key is not None:
            ref = ss.local_ref(resource.get(key))
            return ref[1] if ref and ref[0] == "Organization" else None
        enc = ss.local_ref(resource.get("encounter"))
        if enc is None or enc[0] != "Encounter":
            return None
        row = repo.read_current(self.db, "Encounter", enc[1])
        if row is None or row.deleted or not row.body:
            return None
        return self._organization_of(jsonio.loads(row.body))

    # -- (2) claiming and serving partitions ----------------------------------------------------
    def _due(self) -> bool:
        with self.db.read() as conn:
            stmt = wp.select().with_only_columns(wp.c.partition).where(claims.claimable(store.QUEUE, now_us())).limit(1)
            return conn.execute(stmt).first() is not None

    async def _revive(self) -> None:
        """Partitions of a worker that died holding them: due again once their lease ran out."""
        now = now_us()
        with self.db.read() as conn:
            stmt = wp.select().with_only_columns(wp.c.partition).where(claims.abandoned(store.QUEUE, now)).limit(1)
            if conn.execute(stmt).first() is None:
                return
        await self._write(lambda conn: claims.revive(conn, store.QUEUE, now))

    async def _claim_and_serve(self) -> int:
        await self._revive()
        free = self.concurrency - len(self._tasks)
        if free <= 0 or not self._due():
            return 0
        now = now_us()
        got = await self._write(lambda conn: claims.claim(conn, store.QUEUE, self.owner, self.lease_us, now, free))
        for claim in got:
            task = asyncio.get_running_loop().create_task(self._serve(claim))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return len(got)

    async def _serve(self, claim: claims.Claim) -> None:
        try:
            await self._serve_claim(claim)
        except _Stop:
            log.info("satusehat: lost the lease on %s", claim.partition)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._write(lambda conn: claims.release(conn, claim.queue, claim.partition, self.owner, now_us())))
            raise
        except Exception:
            log.exception("satusehat %s: serving failed", claim.partition)
            now = now_us()
            await self._write(
                lambda conn: claims.failed(
                    conn, claim.queue, claim.partition, self.owner, now, retry_at_us=now + 5 * _US, error="internal error (logged)"
                )
            )

    async def _serve_claim(self, claim: claims.Claim) -> None:
        """Send the partition's pending items in order, a chunk at a time: one write transaction
        marks a chunk's creates in doubt (before any of them is POSTed) and records the outcomes of
        the chunk before (with the lease renewed), instead of two transactions per item."""
        with self.db.read() as conn:
            items = store.due_in(conn, claim.partition)
        items.sort(key=lambda i: (_ORDER.get(i.res_type, 99), i.queued_us))
        r = _Round(claim, now_us())
        for start in range(0, len(items), CHUNK):
            with self.db.read() as conn:
                chunk = [i for i in store.current(conn, items[start : start + CHUNK]) if i.status == "pending"]
            doubt = [i for i in chunk if i.satusehat_id is None and not i.in_doubt]
            await self._record(r, in_doubt=doubt)
            r.marked.update(i.ref for i in doubt)  # not sent before: no look-up needed
            for n, item in enumerate(chunk):
                if now_us() - r.renewed_us > self.lease_us // 3:
                    await self._record(r)  # a slow SATUSEHAT: the lease is renewed well before it runs out
                current = dataclasses.replace(item, in_doubt=True) if item in doubt else item
                outcome = await self._sync(r, current)
                if isinstance(outcome, _Retry):
                    # the chunk's later creates were marked in doubt but never sent: not in doubt
                    # (else each would be looked up in SATUSEHAT before its POST next time)
                    unsent = [i for i in chunk[n + 1 :] if i in doubt]
                    await self._backoff(r, current, outcome, unsent)
                    return
        await self._record(r, finish=True)

    async def _record(self, r: _Round, *, in_doubt: list[store.Item] | None = None, finish: bool = False) -> None:
        """One write: the outcomes noted since the last one, ``in_doubt`` marked (committed before
        their POSTs), and with ``finish`` the partition done; :class:`_Stop` if the lease is lost."""
        outcomes, r.outcomes = r.outcomes, []
        if not outcomes and not in_doubt and not finish and now_us() - r.renewed_us < self.lease_us // 3:
            return
        claim = r.claim
        now = now_us()

        def work(conn: Connection) -> None:
            if not claims.renew(conn, claim.queue, claim.partition, self.owner, self.lease_us, now):
                raise _Stop()
            self._write_outcomes(conn, now, outcomes)
            store.update_many(conn, [(item, {"in_doubt": True}) for item in in_doubt or ()], now)
            if finish:
                more = store.has_pending(conn, claim.partition)
                claims.done(conn, claim.queue, claim.partition, self.owner, now, next_us=now if more else None)

        await self._write(work, alone=False)
        r.renewed_us = now

    async def _backoff(self, r: _Round, item: store.Item, retry: _Retry, unsent: list[store.Item]) -> None:
        claim = r.claim
        delay = claims.backoff_seconds(claim.failures, self.retry_base, self.retry_max)
        if retry.after is not None:
            delay = max(delay, min(retry.after, self.retry_max))
        now = now_us()
        log.info("satusehat %s: %s (again in %.1f s)", item.ref, retry.error, delay)
        outcomes, r.outcomes = r.outcomes, []

        def work(conn: Connection) -> None:
            if not claims.renew(conn, claim.queue, claim.partition, self.owner, self.lease_us, now):
                raise _Stop()
            self._write_outcomes(conn, now, outcomes)
            store.update(conn, item, now, attempts=item.attempts + 1, last_attempt_us=now, last_error=retry.error)
            store.update_many(conn, [(other, {"in_doubt": False}) for other in unsent], now)
            claims.failed(conn, claim.queue, claim.partition, self.owner, now, retry_at_us=now + int(delay * _US), error=retry.error)

        await self._write(work, alone=False)

    # -- one item ------------------------------------------------------------------------
    def _mark(self, r: _Round, item: store.Item, **values: Any) -> None:
        """Note an outcome on the item (written by the round's next :meth:`_record`)."""
        if values.get("status") in ("held", "failed"):
            r.noted[item.ref] = (values["status"], values.get("last_error"))
        if item.ref in r.marked and "in_doubt" not in values:
            values["in_doubt"] = False  # marked before sending, but not sent (held, waiting ...)
        r.outcomes.append(_Outcome(item, values))

    def _write_outcomes(self, conn: Connection, now: int, outcomes: list[_Outcome | Callable[[Connection, int], None]]) -> None:
        """The outcomes noted since the last write, in one transaction: the items' current rows read
        in one statement, the items waiting for those sent requeued with one more."""
        noted = [o for o in outcomes if isinstance(o, _Outcome)]
        latest = store.by_keys(conn, [(o.item.res_type, o.item.res_id) for o in noted])
        sent: list[str] = []
        updates: list[tuple[store.Item, dict[str, Any]]] = []
        for o in noted:
            vals = dict(o.values)
            newest = latest.get((o.item.res_type, o.item.res_id))
            if o.sent_version is not None:
                sent.append(o.item.ref)
                # a newer local version noted meanwhile stays pending (sent next as a PUT)
                vals["status"] = "pending" if newest is not None and newest.version > o.sent_version else "synced"
            elif "version" in vals and newest is not None and newest.version > vals["version"]:
                # a newer local version was noted meanwhile: it stays pending (this outcome is history)
                vals.pop("version")
                vals.pop("status", None)
            if vals.get("status") == "waiting" and vals.get("waits_for"):
                # the parent may have been synced since we looked (its own partition's write requeued
                # whatever waited then, not this): locked, so the two writes cannot miss each other
                parent = store.get(conn, *str(vals["waits_for"]).split("/", 1), for_update=True)
                if parent is not None and parent.satusehat_id:
                    vals.update(status="pending", waits_for=None, last_error=None, queued_us=now)
                    claims.want(conn, store.QUEUE, o.item.partition, now)
            updates.append((o.item, vals))
        store.update_many(conn, updates, now)
        for other in outcomes:
            if not isinstance(other, _Outcome):
                other(conn, now)
        store.requeue(conn, store.waiting_for(conn, sent), now)
        for o in noted:
            if o.condition is not None:
                self._diagnosis_changed(conn, o.condition, now)

    async def _sync(self, r: _Round, item: store.Item) -> _Retry | None:
        row = repo.read_current(self.db, item.res_type, item.res_id)
        if row is None or row.deleted or not row.body:
            self._mark(r, item, status="not-applicable", last_error=DELETED)
            return None
        resource = jsonio.loads(row.body)
        facility = self.facilities.get(item.facility)
        if facility is None:
            self._mark(r, item, status="held", last_error=f"facility {item.facility!r} is no longer configured")
            return None
        reason = ss.hold_reason(resource)
        if reason is not None:
            self._mark(r, item, status="held", version=row.version, last_error=reason)
            return None
        client = self.clients[facility.name]
        ids: dict[tuple[str, str], str] = {}
        needs = ss.needs(resource)
        for ref in needs.required:
            got = await self._resolve(r, client, ref, facility.name)
            if isinstance(got, _Retry):
                return got
            if isinstance(got, tuple):  # (status, reason, waits_for)
                status, text, waits = got
                self._mark(r, item, status=status, version=row.version, last_error=text, waits_for=waits)
                return None
            if got is None:  # only optional look-ups answer None
                return _Retry(f"{ref[0]}/{ref[1]} could not be resolved")
            ids[ref] = got
        for ref in needs.optional:
            got = await self._resolve(r, client, ref, facility.name, optional=True)
            if isinstance(got, str):
                ids[ref] = got
        body = ss.payload(resource, facility.organization_id, ids, item.satusehat_id)
        return await self._send(r, client, item, row.version, resource, body)

    async def _resolve(
        self, r: _Round, client: SatusehatClient, ref: tuple[str, str], facility: str, *, optional: bool = False
    ) -> str | tuple[str, str, str | None] | _Retry | None:
        """The SATUSEHAT id of a local reference; ("held"|"waiting", reason, waits_for) when there
        is none yet; a :class:`_Retry` when SATUSEHAT could not be asked."""
        res_type, res_id = ref
        if r.known.get(f"{res_type}/{res_id}"):  # synced or looked up in this round
            return r.known[f"{res_type}/{res_id}"]
        if res_type in ss.LOOKED_UP_TYPES:
            return await self._ihs(r, client, res_type, res_id, optional=optional)
        if res_type == "Organization":
            row = repo.read_current(self.db, res_type, res_id)
            if row is None or row.deleted or not row.body:
                return None if optional else ("held", f"{res_type}/{res_id} does not exist", None)
            if not ss.is_sub_unit(jsonio.loads(row.body)):
                return client.facility.organization_id  # the facility itself: SATUSEHAT's id is the facility's
        with self.db.read() as conn:
            parent = store.get(conn, res_type, res_id)
        if parent is not None and parent.facility != facility and parent.status != "not-applicable":
            # SATUSEHAT ids are per facility's organization: another facility's Location is not ours
            return None if optional else ("held", f"{res_type}/{res_id} belongs to facility {parent.facility!r}, not {facility!r}", None)
        if parent is not None and parent.satusehat_id:
            r.known[f"{res_type}/{res_id}"] = parent.satusehat_id  # the visit's other resources ask again
            return parent.satusehat_id
        if optional:
            return None
        noted = r.noted.get(f"{res_type}/{res_id}") or ((parent.status, parent.last_error) if parent is not None else None)
        state = f" (it is {noted[0]}: {noted[1]})" if noted is not None and noted[0] in ("held", "failed") else ""
        return ("waiting", f"waits for {res_type}/{res_id} to be synced{state}", f"{res_type}/{res_id}")

    async def _ihs(
        self, r: _Round, client: SatusehatClient, kind: str, res_id: str, *, optional: bool
    ) -> str | tuple[str, str, str | None] | _Retry | None:
        row = repo.read_current(self.db, kind, res_id)
        if row is None or row.deleted or not row.body:
            return None if optional else ("held", f"{kind}/{res_id} does not exist", None)
        nik = ss.nik_of(jsonio.loads(row.body))
        if nik is None:
            return (
                None
                if optional
                else ("held", f"{kind}/{res_id} has no NIK (identifier {systems.NIK}): SATUSEHAT needs its IHS number", None)
            )
        now = now_us()
        with self.db.read() as conn:
            cached = r.asked.get((kind, nik)) or store.cached_ihs(conn, kind, nik)
        if cached is not None and cached[0] is not None:
            r.known[f"{kind}/{res_id}"] = cached[0]
            return cached[0]
        if cached is not None and now - cached[1] < self.negative_ttl_us:
            if optional:
                return None
            again = to_instant(cached[1] + self.negative_ttl_us)
            return (
                "held",
                f"SATUSEHAT knows no {kind} with the NIK of {kind}/{res_id} "
                f" (asked {to_instant(cached[1])}; asked again after {again} or on retry)",
                None,
            )
        reply = await client.search(kind, systems.NIK, nik)
        if not reply.ok:
            if optional:
                return None
            return _Retry(f"{kind} look-up by NIK: {reply.describe()}", reply.retry_after)
        ihs = first_id(reply)
        r.asked[(kind, nik)] = (ihs, now)
        r.outcomes.append(lambda conn, _: store.remember_ihs(conn, kind, nik, ihs, now))
        if ihs is None:
            return None if optional else ("held", f"SATUSEHAT knows no {kind} with the NIK of {kind}/{res_id}", None)
        r.known[f"{kind}/{res_id}"] = ihs
        return ihs

    async def _send(
        self, r: _Round, client: SatusehatClient, item: store.Item, version: int, resource: dict[str, Any], body: dict[str, Any]
    ) -> _Retry | None:
        facility = client.facility
        system = ss.identifier_system(item.res_type, facility.organization_id)
        satusehat_id = item.satusehat_id
        if satusehat_id is None and ((item.in_doubt and item.ref not in r.marked) or item.res_type in ss.LOOKED_UP_FIRST):
            # an earlier create may have happened without its answer reaching us, or SATUSEHAT has the
            # Location / sub-unit already (registered by hand): look before creating
            found = await client.search(item.res_type, system, item.res_id)
            if not found.ok:
                return _Retry(f"look-up after an unanswered create: {found.describe()}", found.retry_after)
            satusehat_id = first_id(found)
        if satusehat_id is not None:
            body = {**body, "id": satusehat_id}
            reply = await client.call("PUT", f"{item.res_type}/{satusehat_id}", body)
        else:
            reply = await client.call("POST", item.res_type, body)
            if reply.status == 400 and "20002" in ss.rule_numbers(reply.body):
                # a duplicate: ours from an earlier create whose answer was lost
                found = await client.search(item.res_type, system, item.res_id)
                satusehat_id = first_id(found) if found.ok else None
                if satusehat_id is not None:
                    reply = await client.call("PUT", f"{item.res_type}/{satusehat_id}", {**body, "id": satusehat_id})
        now = now_us()
        if reply.ok:
            new_id = satusehat_id or (str(reply.body.get("id")) if isinstance(reply.body, dict) and reply.body.get("id") else None)
            if new_id is None:
                return _Retry("SATUSEHAT answered a create without an id")
            created = item.satusehat_id is None
            self._synced(r, item, version, new_id, resource, created, now)
            return None
        if reply.retriable or reply.status == 401:
            return _Retry(reply.describe(), reply.retry_after)
        rules = ss.rule_numbers(reply.body)
        outcome = jsonio.dumps(reply.body).decode() if isinstance(reply.body, dict) else reply.text[:4000]
        self._mark(
            r,
            item,
            status="failed",
            version=version,
            attempts=item.attempts + 1,
            last_attempt_us=now,
            last_error=reply.describe(),
            rule=",".join(rules) or None,
            outcome=outcome,
            in_doubt=False,
        )
        return None

    def _synced(self, r: _Round, item: store.Item, version: int, new_id: str, resource: dict[str, Any], created: bool, now: int) -> None:
        ref = item.ref
        r.known[ref] = new_id
        values = dict(
            satusehat_id=new_id,
            synced_version=version,
            attempts=item.attempts + 1,
            last_attempt_us=now,
            last_error=None,
            rule=None,
            outcome=None,
            waits_for=None,
            in_doubt=False,
        )
        condition = resource if created and item.res_type == "Condition" else None
        r.outcomes.append(_Outcome(item, values, sent_version=version, condition=condition))

    def _diagnosis_changed(self, conn: Connection, condition: dict[str, Any], now: int) -> None:
        """A new Condition the Encounter lists as a diagnosis: the Encounter is sent again (PUT)."""
        enc = ss.local_ref(condition.get("encounter"))
        if enc is None:
            return
        encounter = store.get(conn, enc[0], enc[1])
        if encounter is None or encounter.status != "synced":
            return
        row = repo.read_current(self.db, enc[0], enc[1])
        if row is None or row.deleted or not row.body:
            return
        diagnoses = ss.needs(jsonio.loads(row.body)).optional
        if ("Condition", str(condition.get("id"))) in diagnoses:
            store.requeue(conn, [encounter], now)
