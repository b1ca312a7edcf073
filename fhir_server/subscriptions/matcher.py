"""Turning the change log into numbered subscription events (the ``subscriptions`` consumer).

One worker at a time (the cursor lease, ``storage/claims.py``) reads the changes after the
cursor, asks the search engine which of them each started subscription selects (its criteria or
filters plus ``_id`` = the changed ids: one search per subscription and batch, never a second
matcher), and then, in one write transaction, moves the cursor (compare-and-set: a worker that
lost the lease rolls back), numbers the events of each subscription gap-free and marks their
partitions due. A crash anywhere before the commit leaves the cursor where it was, so the batch
is matched again; after it, the events are in the database. Changes are matched against the
resource as stored when the matcher runs (normally within a second of the commit): a resource
changed again meanwhile is judged by its newer state (docs/subscriptions.md).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from sqlalchemy.engine import Connection

from fhir_server.errors import FhirError
from fhir_server.service.search import SearchService
from fhir_server.storage import changelog, claims
from fhir_server.storage.db import Database
from fhir_server.storage.group_commit import Writes
from fhir_server.subscriptions import store
from fhir_server.subscriptions.access import subscriber
from fhir_server.timeutil import now_us

log = logging.getLogger("fhir_server.subscriptions")


@dataclass
class Batch:
    position: int
    changes: list[changelog.Change]
    #: subscription id -> the change-log seq of its own latest write in this batch
    starts: dict[str, int] = field(default_factory=dict)
    matched: dict[str, list[changelog.Change]] = field(default_factory=dict)
    #: subscriptions with new events whose partition should run now
    due: dict[str, str] = field(default_factory=dict)


class Matcher:
    def __init__(
        self,
        db: Database,
        writes: Writes,
        search: SearchService,
        owner: str,
        *,
        base: str,
        token_mode: bool,
        lease_us: int = 30_000_000,
        batch_size: int = 500,
    ) -> None:
        self.db = db
        self.writes = writes
        self.search = search
        self.owner = owner
        self.base = base
        self.token_mode = token_mode
        self.lease_us = lease_us
        self.batch_size = batch_size

    def _lease(self, conn: Connection) -> int | None:
        now = now_us()
        start = changelog.last_seq(conn)  # read before the emptiness check (docs: no lost first subscription)
        if store.all_states(conn):
            start = 0
        return claims.lease_cursor(conn, store.CONSUMER, self.owner, self.lease_us, now, start=start)

    async def run_once(self) -> int:
        """Match one batch; the number of changes consumed (0: nothing new, or another worker matches)."""
        with self.db.read() as conn:  # read-only when there is nothing new: no write lock per poll
            known = claims.cursor_position(conn, store.CONSUMER)
            if known is not None and changelog.last_seq(conn) <= known:
                return 0
        position = await self.writes.run(self._lease, alone=True)
        if position is None:
            return 0
        with self.db.read() as conn:
            changes = changelog.read_after(conn, position, self.batch_size)
        if not changes:
            return 0
        batch = Batch(position, changes)
        await self._match(batch)
        await self.writes.run(lambda conn: self._commit(conn, batch), alone=True)
        return len(changes)

    async def _match(self, batch: Batch) -> None:
        for c in batch.changes:
            if c.res_type == "Subscription":
                batch.starts.setdefault(c.res_id, c.seq)
        types = sorted({c.res_type for c in batch.changes})
        with self.db.read() as conn:
            states = [s for s in store.counting_or_new(conn, types)]
            principals = {s.client_id: subscriber(conn, s.client_id, token_mode=self.token_mode) for s in states}
        for st in states:
            start = st.start_seq if st.start_seq is not None else batch.starts.get(st.sub_id)
            if start is None:
                continue
            spec = st.spec
            candidates = [
                c
                for c in batch.changes
                if c.seq > start
                and c.res_type == spec.res_type
                and c.action in spec.interactions
                and (spec.end_us is None or c.recorded_us < spec.end_us)
            ]
            principal = principals.get(st.client_id)
            if not candidates:
                continue
            if principal is None:
                # the client was revoked: nothing is counted for it; the worker sets the subscription to error
                if st.status in ("requested", "active"):
                    batch.due[st.sub_id] = store.queue_of(spec)
                continue
            if spec.params:
                # deleted resources match no search: deletes reach only subscriptions without filters (spec.py refuses the rest)
                ids = sorted({c.res_id for c in candidates if c.action != "delete"})
                found: set[str] = set()
                for i in range(0, len(ids), 200):
                    chunk = ids[i : i + 200]
                    params = [*spec.params, ("_id", ",".join(chunk)), ("_count", str(len(chunk)))]
                    try:
                        result = self.search.run(self.base, spec.res_type, params, strict=False, principal=principal)
                    except FhirError as exc:  # e.g. the client may no longer search a chained type: nothing matches
                        log.warning(
                            "subscription %s: criteria search failed: %s", st.sub_id, exc.issues[0].diagnostics if exc.issues else exc
                        )
                        break
                    found.update(res_id for _, res_id, _ in result.matches)
                candidates = [c for c in candidates if c.action != "delete" and c.res_id in found]
                await asyncio.sleep(0)  # let requests in between subscriptions' searches
            if candidates:
                batch.matched[st.sub_id] = candidates
                if st.status in ("requested", "active"):
                    batch.due[st.sub_id] = store.queue_of(spec)

    def _commit(self, conn: Connection, batch: Batch) -> None:
        now = now_us()
        claims.advance_cursor(conn, store.CONSUMER, self.owner, batch.position, batch.changes[-1].seq, now)
        for sub_id, seq in batch.starts.items():
            store.start(conn, sub_id, seq)
        for sub_id, changes in batch.matched.items():
            store.add_events(conn, sub_id, changes)  # None: deleted meanwhile (nothing added)
        for sub_id, queue in batch.due.items():
            if store.get(conn, sub_id) is not None:
                claims.want(conn, queue, sub_id, now)
