"""Turning the change log into numbered subscription events (the ``subscriptions`` consumer).

One worker at a time (the cursor lease, ``storage/claims.py``) reads the changes after the
cursor, decides which of them each started subscription selects, and then, in **one** write
transaction, takes or renews the lease, moves the cursor
(compare-and-set), numbers the events of each subscription gap-free, marks their partitions due
and claims those this worker may serve at once (``Plan``): no transaction of its own for the
lease or the claim. A crash anywhere before the commit leaves the cursor where it was, so the
batch is matched again; after it, the events are in the database.

Which changes a subscription selects: without a filter, every change of its type and
interactions; with filters the in-memory matcher understands (``rowmatch.py``: ``_id``, tokens,
strings, plain references), the index rows of the version each change produced, compared in
memory with the filters filed under the keys those rows carry (a change meets only the filters
it could satisfy: the cost does not grow with the number of subscriptions); with any other
filter (chains, dates ...), the search engine: its criteria plus ``_id`` = the changed ids, one
search per subscription and batch, as the subscribing client. Such a search sees the resources
as they are now, which is the version the change produced unless the resource changed again
since; those few are judged again, in a rolled-back transaction where that version is made
current, by the same searches (``exact.py``, docs/subscriptions.md).

The subscriptions themselves are read once and kept (:class:`View`) while nothing can have
changed them: every change to what the view holds (a Subscription written or deleted, its
status set by the worker) writes a Subscription resource, so it is in the change log; the view is
read again for a batch that holds a Subscription change, after a commit that started one, and
when another worker moved the cursor since this one's last batch (it may have seen such changes).
A count over every subscription each round cost more than the matching itself at 1,000.

While no subscription counts (``quiet``), a round reads no changes: in one read it takes the
change log's newest seq and then checks that still none counts, and moves the cursor there. Such
changes can select no one: a subscription written later has a later seq, and its events start
after its own change. The worker then also runs its rounds less often (``worker.py``).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from sqlalchemy.engine import Connection

from fhir_server import jsonio
from fhir_server.errors import FhirError
from fhir_server.service.access import Principal
from fhir_server.service.search import SearchService
from fhir_server.storage import changelog, claims
from fhir_server.storage import repository as repo
from fhir_server.storage.db import Database
from fhir_server.storage.group_commit import Writes
from fhir_server.subscriptions import exact, rowmatch, store
from fhir_server.subscriptions.access import subscriber
from fhir_server.timeutil import now_us

log = logging.getLogger("fhir_server.subscriptions")


@dataclass
class Batch:
    position: int
    changes: list[changelog.Change]
    #: no subscription counts: the cursor moves here without reading the changes (``_pending``)
    jump: int | None = None
    #: subscription id -> the change-log seq of its own latest write in this batch
    starts: dict[str, int] = field(default_factory=dict)
    matched: dict[str, list[changelog.Change]] = field(default_factory=dict)
    #: subscriptions with new events whose partition should run now
    due: dict[str, str] = field(default_factory=dict)
    #: the subscriptions that may select these changes, and whose eyes each sees through
    view: View | None = None
    principals: dict[str | None, Principal | None] = field(default_factory=dict)
    #: the versions the changes produced, of the types with in-memory filters
    stored: dict[exact.Version, repo.VersionRow] = field(default_factory=dict)


@dataclass
class TypeView:
    """The counting subscriptions on one resource type, by how their changes are judged."""

    #: no filter, or filters the search engine judges
    plain: list[store.State] = field(default_factory=list)
    #: filters judged in memory, by filter; and those filters, indexed
    by_filter: dict[rowmatch.FilterKey, list[store.State]] = field(default_factory=dict)
    index: rowmatch.Index = field(default_factory=rowmatch.Index)
    clients: set[str | None] = field(default_factory=set)


@dataclass
class View:
    types: dict[str, TypeView]

    @classmethod
    def of(cls, states: list[store.State], base: str) -> View:
        types: dict[str, TypeView] = {}
        compiled: dict[rowmatch.FilterKey, rowmatch.Filter | None] = {}
        for st in states:
            tv = types.setdefault(st.spec.res_type, TypeView())
            tv.clients.add(st.client_id)
            key = (st.spec.res_type, tuple(st.spec.params))
            if key not in compiled:
                compiled[key] = rowmatch.compile_filter(st.spec.res_type, st.spec.params, base) if st.spec.params else None
            f = compiled[key]
            if f is None:
                tv.plain.append(st)
            else:
                tv.index.add(f)
                tv.by_filter.setdefault(f.key, []).append(st)
        return cls(types)


#: the consumer has no cursor yet (see ``Matcher._pending``)
UNSTARTED = Batch(-1, [])


@dataclass(frozen=True)
class Plan:
    """What the matcher's commit may claim for the worker that runs it: at most ``limit``
    partitions, websocket ones only among ``bound`` (the sockets this process holds)."""

    owner: str
    lease_us: int
    limit: int
    bound: frozenset[str] = frozenset()


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
        self._view: View | None = None
        #: the cursor position up to which ``_view`` is known to be current (None: read it again)
        self._view_at: int | None = None
        #: no subscription counted when this worker last looked (its last batch, or a round
        #: while another worker held the cursor): no change can be matched to anyone, so the
        #: worker runs rounds less often and the cursor jumps over the changes (``_pending``)
        self.quiet = False

    def _lease(self, conn: Connection) -> int | None:
        now = now_us()
        start = changelog.last_seq(conn)  # read before the emptiness check (docs: no lost first subscription)
        if store.all_states(conn):
            start = 0
        return claims.lease_cursor(conn, store.CONSUMER, self.owner, self.lease_us, now, start=start)

    def _pending(self, conn: Connection) -> Batch | None:
        """The next batch of changes, with the subscriptions that may select them and the
        versions the in-memory filters judge, when there is one and no other worker holds the
        cursor's lease (read-only: no write lock per poll); None otherwise. :data:`UNSTARTED`
        before the consumer's first run."""
        cursor = claims.cursor_state(conn, store.CONSUMER)
        if cursor is None:
            return UNSTARTED
        position, owner, until = cursor
        if owner not in (None, self.owner) and until is not None and until >= now_us():
            self.quiet = not store.any_counting(conn)  # another worker matches; the view is its own
            return None
        if self.quiet:
            # the newest change first: a subscription committed after this read has a later seq
            # (the change log is in commit order), so it is not jumped over; one committed before
            # it counts by now, and then the changes are read and matched as always
            last = changelog.last_seq(conn)
            if not store.any_counting(conn):
                return Batch(position, [], jump=last) if last > position else None
        changes = changelog.read_after(conn, position, self.batch_size)
        if not changes:
            return None
        batch = Batch(position, changes)
        batch.view = view = self._current_view(conn, batch)
        self.quiet = not view.types
        clients = {cid for t in {c.res_type for c in changes} if t in view.types for cid in view.types[t].clients}
        batch.principals = {cid: subscriber(conn, cid, token_mode=self.token_mode) for cid in clients}
        # deleted resources match no filter: only live versions are judged
        wanted = [_version(c) for c in changes if c.action != "delete" and c.res_type in view.types and view.types[c.res_type].by_filter]
        batch.stored = repo.get_versions(conn, wanted) if wanted else {}
        return batch

    def _current_view(self, conn: Connection, batch: Batch) -> View:
        """The counting subscriptions, read again only when they may have changed (module docstring)."""
        if self._view is None or self._view_at != batch.position or _touches_subscriptions(batch):
            self._view = View.of(store.counting(conn), self.base)
        return self._view

    async def run_once(self, plan: Plan | None = None) -> tuple[int, list[claims.Claim]]:
        """Match one batch: (the number of changes consumed, the partitions claimed for ``plan``).
        (0, []): nothing new, or another worker matches."""
        batch = await self.db.read_off_loop(self._pending)
        if batch is UNSTARTED:  # the first run on this database: where the cursor starts is decided once
            await self.writes.run(self._lease, alone=True)
            batch = await self.db.read_off_loop(self._pending)
        if batch is None or batch is UNSTARTED:
            return 0, []
        if batch.jump is not None:
            jump, now = batch.jump, now_us()
            await self.writes.run(
                lambda conn: claims.move_cursor(conn, store.CONSUMER, self.owner, self.lease_us, now, batch.position, jump)
            )
            self._view_at = None  # the changes jumped over were not read: the view is read again
            return 0, []
        await self._match(batch)
        got = await self.writes.run(lambda conn: self._commit(conn, batch, plan))
        # a batch with Subscription changes started some (their start_seq): read them again
        self._view_at = None if got is None or _touches_subscriptions(batch) else batch.changes[-1].seq
        if got is None:
            return 0, []  # another worker took the cursor meanwhile: it matches this batch
        return len(batch.changes), got

    async def _match(self, batch: Batch) -> None:
        for c in batch.changes:
            if c.res_type == "Subscription":
                batch.starts.setdefault(c.res_id, c.seq)
        assert batch.view is not None
        by_type: dict[str, list[changelog.Change]] = {}
        for c in batch.changes:
            by_type.setdefault(c.res_type, []).append(c)
        #: subscriptions with a search: (state, principal, candidates, ids the search selected)
        searched: list[tuple[store.State, Principal, list[changelog.Change], set[str]]] = []
        for res_type, changes in by_type.items():
            tv = batch.view.types.get(res_type)
            if tv is None:
                continue
            for st in tv.plain:
                candidates = self._candidates(batch, st, changes)
                if not candidates or not self._allowed(batch, st):
                    continue
                principal = batch.principals[st.client_id]
                assert principal is not None
                if st.spec.params:
                    # deleted resources match no search: deletes reach only subscriptions without filters (spec.py refuses the rest)
                    candidates = [c for c in candidates if c.action != "delete"]
                    ids = sorted({c.res_id for c in candidates})
                    # on a thread: requests are served while the search waits on the database
                    searched.append((st, principal, candidates, await asyncio.to_thread(self._search, st, principal, ids)))
                    continue
                self._matched(batch, st, candidates)
            if tv.by_filter:
                self._match_in_memory(batch, tv, changes)
        if searched:
            await self._judge(batch, searched)

    @staticmethod
    def _candidates(batch: Batch, st: store.State, changes: list[changelog.Change]) -> list[changelog.Change]:
        """The changes (of its type) the subscription may select: after its start, of its
        interactions, before its end."""
        start = st.start_seq if st.start_seq is not None else batch.starts.get(st.sub_id)
        if start is None:
            return []
        spec = st.spec
        return [
            c for c in changes if c.seq > start and c.action in spec.interactions and (spec.end_us is None or c.recorded_us < spec.end_us)
        ]

    @staticmethod
    def _allowed(batch: Batch, st: store.State) -> bool:
        """Whether the subscription's client may still be told anything. A revoked client's
        subscription gets nothing counted, and is made due so that the worker sets it to error."""
        if batch.principals.get(st.client_id) is not None:
            return True
        if st.status in ("requested", "active"):
            batch.due[st.sub_id] = store.queue_of(st.spec)
        return False

    def _match_in_memory(self, batch: Batch, tv: TypeView, changes: list[changelog.Change]) -> None:
        """The subscriptions with in-memory filters (``rowmatch.py``) that each change selects,
        judged on the version it produced: only the filters filed under its rows' keys are tried."""
        for cid in tv.clients:
            if batch.principals.get(cid) is None:  # revoked: as ``_allowed`` does for the others
                for states in tv.by_filter.values():
                    for st in states:
                        if st.client_id == cid and self._candidates(batch, st, changes):
                            self._allowed(batch, st)
        live = [c for c in changes if c.action != "delete"]  # deleted resources match no filter
        stored = batch.stored
        found: dict[str, tuple[store.State, list[changelog.Change]]] = {}
        for c in live:
            row = stored.get((c.res_type, c.res_id, c.version))
            body = repo.as_bytes(row.body) if row is not None and not row.deleted else None
            if body is None:
                continue
            for f in tv.index.matching(c.res_id, jsonio.loads(body)):
                for st in tv.by_filter[f.key]:
                    if batch.principals.get(st.client_id) is not None and self._candidates(batch, st, [c]):
                        found.setdefault(st.sub_id, (st, []))[1].append(c)
        for st, selected in found.values():
            self._matched(batch, st, selected)

    def _search(self, st: store.State, principal: Principal, ids: list[str]) -> set[str]:
        """The ids among ``ids`` the subscription's search selects, as the resources are now."""
        spec = st.spec
        found: set[str] = set()
        for i in range(0, len(ids), 200):
            chunk = ids[i : i + 200]
            params = [*spec.params, ("_id", ",".join(chunk)), ("_count", str(len(chunk)))]
            try:
                result = self.search.run(self.base, spec.res_type, params, strict=False, principal=principal)
            except FhirError as exc:  # e.g. the client may no longer search a chained type: nothing matches
                log.warning("subscription %s: criteria search failed: %s", st.sub_id, exc.issues[0].diagnostics if exc.issues else exc)
                break
            found.update(res_id for _, res_id, _ in result.matches)
        return found

    async def _judge(self, batch: Batch, searched: list[tuple[store.State, Principal, list[changelog.Change], set[str]]]) -> None:
        """Each change by its own version (``exact.py``): the searches' verdicts stand for the
        versions still current after them; the others are probed."""
        keys = {(c.res_type, c.res_id) for _, _, cands, _ in searched for c in cands}
        current = await self.db.read_off_loop(lambda conn: exact.current_versions(conn, keys))

        def stale(c: changelog.Change) -> bool:
            return current.get((c.res_type, c.res_id)) != (c.version, False)

        askers = [
            exact.Asker(st.sub_id, st.spec.res_type, st.spec.params, principal, frozenset(_version(c) for c in cands if stale(c)))
            for st, principal, cands, _ in searched
        ]
        askers = [a for a in askers if a.versions]
        probed = await exact.probe(self.writes, self.search, self.base, askers) if askers else set()
        for st, _, cands, found in searched:
            self._matched(batch, st, [c for c in cands if ((st.sub_id, _version(c)) in probed if stale(c) else c.res_id in found)])

    def _matched(self, batch: Batch, st: store.State, changes: list[changelog.Change]) -> None:
        if changes:
            batch.matched[st.sub_id] = changes
            if st.status in ("requested", "active"):
                batch.due[st.sub_id] = store.queue_of(st.spec)

    def _commit(self, conn: Connection, batch: Batch, plan: Plan | None) -> list[claims.Claim] | None:
        """The batch's one write transaction (see the module docstring); None when the cursor is
        no longer this worker's to move (nothing written)."""
        now = now_us()
        if not claims.move_cursor(conn, store.CONSUMER, self.owner, self.lease_us, now, batch.position, batch.changes[-1].seq):
            return None
        for sub_id, seq in batch.starts.items():
            store.start(conn, sub_id, seq)
        gone = {sub_id for sub_id, changes in batch.matched.items() if store.add_events(conn, sub_id, changes) is None}
        got: list[claims.Claim] = []
        for sub_id, queue in batch.due.items():
            if sub_id in gone:
                continue  # deleted meanwhile (a deleted subscription's partition is dropped when served)
            claims.want(conn, queue, sub_id, now)
            if plan is not None and len(got) < plan.limit and (queue == store.REST_QUEUE or sub_id in plan.bound):
                claim = claims.claim_one(conn, queue, sub_id, plan.owner, plan.lease_us, now)
                if claim is not None:
                    got.append(claim)
        return got


def _touches_subscriptions(batch: Batch) -> bool:
    return any(c.res_type == "Subscription" for c in batch.changes)


def _version(c: changelog.Change) -> exact.Version:
    return (c.res_type, c.res_id, c.version)
