"""Batch and transaction Bundles (http://hl7.org/fhir/R4/http.html#transaction).

A transaction runs in one database transaction: entries are processed in the
spec's order (DELETE, POST, PUT/PATCH, GET/HEAD), ``urn:uuid:``/``urn:oid:``
fullUrls and conditional references are resolved in every reference of every
entry (extensions and contained resources included), and any failure rolls
everything back with an OperationOutcome naming the entry. Batch entries run
in entry order, each in its own transaction, and fail independently.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from sqlalchemy.engine import Connection

from fhir_server import jsonio
from fhir_server.errors import FhirError, Issue, operation_outcome
from fhir_server.model.references import reference_holders
from fhir_server.resource_types import is_resource_type
from fhir_server.search.compartment import Compartment
from fhir_server.search.subsetting import for_read
from fhir_server.service import bundles
from fhir_server.service.access import Principal
from fhir_server.service.audit_trail import AuditTrail
from fhir_server.service.capability import metadata
from fhir_server.service.conditional import ConditionalService, Merge, create_condition, find_matches, parse_condition
from fhir_server.service.history import HistoryService
from fhir_server.service.patch import JSON_PATCH, MERGE_PATCH
from fhir_server.service.preconditions import is_version
from fhir_server.service.prepare_helper import Pending, PrepareHelper, encode, error_of
from fhir_server.service.resources import Prepared, ResourceService
from fhir_server.service.results import OPERATION_OUTCOME, REPRESENTATION, Stored, WriteResult, not_modified, write_outcome
from fhir_server.service.search import SearchService
from fhir_server.storage import changelog
from fhir_server.storage import repository as repo
from fhir_server.storage.stored_terminology import terminology_engine
from fhir_server.timeutil import datetime_range, to_instant
from fhir_server.url_forms import canonical_path, search_get_path
from fhir_server.urlcodec import parse_qsl

_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}
_REASON = {200: "OK", 201: "Created", 204: "No Content", 304: "Not Modified"}


@dataclass
class Entry:
    index: int
    method: str
    res_type: str
    res_id: str | None
    version: str | None
    query: str
    resource: Any
    full_url: str | None
    if_match: str | None
    if_none_exist: str | None
    #: request.url relative to the base (``Patient/1``, ``Patient?name=x``)
    url: str = ""
    #: the id this entry writes, fixed before execution so references can point at it
    target_id: str | None = None
    #: a create's or update's validation, done before the database transaction
    #: (ResourceService.prepare_updates), or the prepare helper's, read when it runs (``settled``)
    prepared: Prepared | Helped | None = None
    #: the interaction of a GET/HEAD entry (``read_kind``): read, vread, search-type,
    #: search-system, history-instance/-type/-system or capabilities
    read_kind: str = ""
    #: the name (without ``$``) of an operation entry (``GET Patient/1/$everything``), batch only
    operation: str | None = None
    #: a read's ``request.ifNoneMatch``, and the last microsecond its ``ifModifiedSince`` covers
    #: (http.html#cread: 304 Not Modified, ``results.not_modified``)
    if_none_match: str | None = None
    if_modified_until: int | None = None
    #: the status the entry answered (set when it ran): a GET entry's AuditEvent records it (a 304)
    answered: int | None = None
    #: a search in a compartment (``Patient/1/Encounter``, ``Patient/1/*``)
    compartment: Compartment | None = None

    @property
    def where(self) -> str:
        return f"Bundle.entry[{self.index}]"

    @property
    def interaction(self) -> str:
        if self.operation is not None:
            return "operation"
        if self.method in ("GET", "HEAD"):
            return self.read_kind
        return {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}[self.method]

    @property
    def conditional(self) -> bool:
        return bool(self.if_none_exist) or (self.res_id is None and self.method in ("PUT", "PATCH", "DELETE"))


@dataclass
class Outcome:
    status: int
    stored: Stored | None = None
    body: bytes | None = None
    location: bool = False
    issues: list[Issue] | None = None
    #: a create, update, patch or delete: ``Prefer: return=`` decides what its entry carries
    write: bool = False


class BundleService:
    def __init__(
        self,
        resources: ResourceService,
        conditional: ConditionalService,
        search: SearchService,
        history: HistoryService,
        audit_trail: AuditTrail,
        *,
        max_entries: int,
    ) -> None:
        self.resources = resources
        self.conditional = conditional
        self.search = search
        self.history = history
        self.audit_trail = audit_trail  # AuditEvent reads and searches: the audit table, as on the routes
        #: prepares part of a large Bundle in another process (server worker processes only, app.py)
        self.prepare_helper: PrepareHelper | None = None
        #: transactions in flight in this process (on its event loop): the helper is for one alone
        self._in_flight = 0
        self.db = resources.db
        self.max_entries = max_entries

    def checked(self, bundle: Any) -> tuple[str, list[Any]]:
        """The Bundle's type (transaction or batch) and its entries, checked."""
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
            raise FhirError.of(400, "invalid", "POST to the base takes a Bundle of type transaction or batch")
        kind = bundle.get("type")
        if kind not in ("transaction", "batch"):
            raise FhirError.of(400, "invalid", f"Bundle.type must be transaction or batch, not {kind!r}", "Bundle.type")
        raw_entries = bundle.get("entry") or []
        if not isinstance(raw_entries, list):
            raise FhirError.of(400, "structure", "Bundle.entry must be an array", "Bundle.entry")
        if len(raw_entries) > self.max_entries:
            raise FhirError.of(413, "too-costly", f"The Bundle has {len(raw_entries)} entries; the limit is {self.max_entries}")
        return kind, raw_entries

    @staticmethod
    def parse_entries(base: str, raw_entries: list[Any]) -> list[Entry]:
        """A transaction's entries, parsed once for every step that needs them (the first
        malformed one raises)."""
        return [parse_entry(base, index, raw) for index, raw in enumerate(raw_entries)]

    async def transaction(
        self,
        base: str,
        entries: list[Entry],
        *,
        principal: Principal,
        write: Any,
        returns: str = REPRESENTATION,
        merge: Merge | None = None,
        capability: Callable[[str], bytes] | None = None,
    ) -> bytes:
        """Run a transaction's entries (:meth:`parse_entries`) in one database transaction; the
        response Bundle's bytes.

        Every entry is authorized before anything runs (``principal``); POST entries are
        validated before the write lock; ``write`` is the pipeline's write runner (one
        transaction of its own). ``merge`` (the Dukcapil/BPJS imports) combines a conditional
        PUT's match with the incoming resource instead of replacing it. ``capability(base)``: the
        CapabilityStatement a ``GET metadata`` entry answers.
        """
        for entry in entries:
            _at(entry, lambda e=entry: authorize_entry(principal, e))
        early = self._rewrite_early(base, entries, principal)
        self._in_flight += 1
        try:
            self._prepare(entries, early)
            outcomes = await write(lambda conn: self._transaction_in(conn, base, entries, merge, principal, capability, early), alone=True)
        finally:
            self._in_flight -= 1
            for entry in entries:
                if isinstance(entry.prepared, Helped):  # read even when its entries never ran
                    entry.prepared.pending.answer(0)
        return self.response(base, "transaction", outcomes, returns)

    def response(self, base: str, kind: str, outcomes: list[Outcome], returns: str) -> bytes:
        """The ``{kind}-response`` Bundle; ``returns`` (``Prefer: return=``) applies to each write entry."""
        entries = [entry_response(base, o, returns) for o in outcomes]
        return bundles.bundle(f"{kind}-response", entries)

    def resolve_conditional_references(self, conn: Connection, base: str, resource: Any, principal: Principal) -> None:
        """Rewrite conditional references (``Patient?identifier=...``) in ``resource`` to ``Type/id``."""
        holders = reference_holders(resource)
        resolved = self._resolve_references(conn, base, _conditional_references([holders], {}), principal)
        _rewrite(holders, {}, _raising(resolved))

    # -- transaction ---------------------------------------------------------
    def _prepare(self, entries: list[Entry], early: _Early | None) -> None:
        """Checks and validation of POST and PUT entries (and, with references rewritten
        ``early``, their index rows: their references are final): all before the write lock."""
        _check_unique_targets(entries)
        # validation does not depend on the references rewritten later (they stay strings),
        # so it runs before the write lock; its errors are raised when the entry executes
        jobs: list[tuple[Entry, str]] = []
        for e in entries:
            if e.method == "POST" and isinstance(e.resource, dict):
                # a create's id is the server's: fixed here unless _rewrite_early fixed it already
                jobs.append((e, e.target_id or str(uuid.uuid4())))
            elif e.method == "PUT" and e.res_id is not None and isinstance(e.resource, dict):
                jobs.append((e, e.res_id))
        index = early is not None
        # only for a transaction alone in this process: with several in flight (several clients)
        # the cores are busy anyway, and sharing would only add the transfer
        helper = self.prepare_helper if self._in_flight == 1 else None
        share = helper.share(len(jobs)) if helper is not None else 0
        if helper is not None and share:
            # the last entries: the server reaches them last, so the helper has the longest to answer
            theirs = jobs[len(jobs) - share :]
            pending = helper.submit(index, [(e.res_type, res_id, *encode(e.resource)) for e, res_id in theirs])
            if pending is not None:
                jobs = jobs[: len(jobs) - share]
                for k, (e, res_id) in enumerate(theirs):
                    e.prepared = Helped(pending, k, res_id, partial(self._prepare_here, [(e, res_id)], early))
        for (e, _), p in zip(jobs, self._prepare_here(jobs, early), strict=True):
            e.prepared = p

    def _prepare_here(self, jobs: list[tuple[Entry, str]], early: _Early | None) -> list[Prepared]:
        holders = early.holders if early is not None else {}
        return self.resources.prepare_updates(
            [(e.res_type, res_id, e.resource, holders.get(e.index)) for e, res_id in jobs], index=early is not None
        )

    def _rewrite_early(self, base: str, entries: list[Entry], principal: Principal) -> _Early | None:
        """The references of every written resource rewritten before the write lock, so that its
        index rows are extracted there too (SQLite's single writer lock is held for less).

        Possible when no entry is a conditional create or update (their ids need the locked
        database). Conditional references are resolved here against a read snapshot; under the
        lock ``_transaction_in`` resolves each again and, if any answer differs (another client
        wrote meanwhile), puts the references back and rewrites them there as before. None: not
        done (also when a reference would fail: the failure is then raised under the lock)."""
        written = [e for e in entries if e.method in ("POST", "PUT") and isinstance(e.resource, dict)]
        if not written or any(e.conditional and e.method in ("POST", "PUT") for e in entries):
            return None
        early = _Early(self._plan(None, base, entries), {}, [])
        # one walk serves the conditional references, the rewriting and the -other index rows
        holders = early.holders = {e.index: reference_holders(e.resource) for e in written}
        wanted = _conditional_references(list(holders.values()), early.references)
        if wanted:
            with self.db.read() as conn:
                early.seq = changelog.last_seq(conn)  # before the searches: their answers are at least this new
                early.resolved = self._resolve_references(conn, base, wanted, principal, seq=early.seq)
        if any(isinstance(target, FhirError) for target in early.resolved.values()):
            return None  # raised, naming its entry, when the references are rewritten under the lock
        try:
            for e in written:
                _rewrite(holders[e.index], early.references, early.resolved.get, early.changed)
        except FhirError:
            early.restore()
            return None
        return early

    def _transaction_in(
        self,
        conn: Connection,
        base: str,
        entries: list[Entry],
        merge: Merge | None,
        principal: Principal,
        capability: Callable[[str], bytes] | None,
        early: _Early | None = None,
    ) -> list[Outcome]:
        """Every entry in the open transaction ``conn``, in the spec's order; the first error raises."""
        outcomes: list[Outcome | None] = [None] * len(entries)
        # PostgreSQL: keys for the creates now, so their rows need no round trip each
        repo.reserve_pks(conn, sum(1 for e in entries if e.method == "POST"))
        if early is not None and not self._still_resolved(conn, base, early, principal):
            early.restore()
            for e in entries:
                if (prepared := settled(e)) is not None:
                    prepared.rows = None  # extracted from references that no longer hold
            early = None
        if early is None:
            self._rewrite_in(conn, base, entries, principal)
        # only when no other entry can write what a PUT writes (a DELETE, a PATCH, a conditional
        # update that lands on the same resource): a row read before the entries ran stays true
        alone = all(e.method in ("GET", "HEAD", "POST") or (e.method == "PUT" and e.res_id is not None) for e in entries)
        puts = [(e.res_type, e.res_id) for e in entries if e.method == "PUT" and e.res_id is not None] if alone else []
        with repo.prefetched_current(conn, puts):
            for entry in sorted(entries, key=lambda e: (_ORDER[e.method], e.index)):
                outcome = _at(entry, lambda e=entry: self._execute(conn, base, e, merge, principal, capability))
                outcomes[entry.index], entry.answered = outcome, outcome.status
        return [o for o in outcomes if o is not None]

    def _rewrite_in(self, conn: Connection, base: str, entries: list[Entry], principal: Principal) -> None:
        """Bundle-local and conditional references rewritten in the locked transaction."""
        references = self._plan(conn, base, entries)
        written = [e for e in entries if e.resource is not None and e.method in ("POST", "PUT")]
        # every conditional reference is resolved before any entry runs, so against one state of
        # the database: the same reference resolves alike in every entry (a Synthea Bundle names
        # the same few Practitioners and Organizations in most of its entries)
        holders = {e.index: reference_holders(e.resource) for e in written}
        resolved = self._resolve_references(conn, base, _conditional_references(list(holders.values()), references), principal)
        resolve = _raising(resolved)
        for entry in written:
            _at(entry, lambda e=entry: _rewrite(holders[e.index], references, resolve))

    def _resolve_references(
        self, conn: Connection, base: str, wanted: list[str], principal: Principal, *, seq: int | None = None
    ) -> dict[str, str | FhirError | None]:
        """Conditional references (``Patient?identifier=...``) to ``Type/id`` of their single match,
        or the error resolving one raises (None: not a reference to resolve), a search per type.

        Resolving is a search on the caller's behalf whose outcome (a match, none, several) tells
        what exists: it needs search on the referenced type. ``seq``: as ``resolve_ids``'s."""
        by_type: dict[str, list[str]] = {}
        out: dict[str, str | FhirError | None] = {}
        for ref in wanted:
            res_type, _, query = ref.partition("?")
            if query and is_resource_type(res_type):
                by_type.setdefault(res_type, []).append(query)
            else:
                out[ref] = None
        for res_type, queries in by_type.items():
            try:
                principal.require(res_type, "search-type")
            except FhirError as exc:
                out.update(dict.fromkeys((f"{res_type}?{q}" for q in queries), exc))
                continue
            for query, found in self.conditional.resolve_ids(conn, res_type, queries, base, seq=seq).items():
                out[f"{res_type}?{query}"] = found if isinstance(found, FhirError) else f"{res_type}/{found}"
        return out

    def _still_resolved(self, conn: Connection, base: str, early: _Early, principal: Principal) -> bool:
        """Whether every conditional reference resolved before the lock resolves alike now. The
        change log numbers every committed write in commit order (on PostgreSQL too): if its last
        number is the one read before the searches, nothing they could see has changed since."""
        if early.seq is not None and changelog.last_seq(conn) == early.seq:
            return True
        now = self._resolve_references(conn, base, list(early.resolved), principal)
        return all(now[ref] == target for ref, target in early.resolved.items())

    def _plan(self, conn: Connection | None, base: str, entries: list[Entry]) -> dict[str, str]:
        """fullUrl -> ``Type/id`` for every entry that creates or updates, ids fixed now (a
        create's id once: kept when planned before the lock). ``conn`` None: no conditional
        create or update among the entries."""
        references: dict[str, str] = {}
        for e in entries:
            if e.method == "POST" and e.if_none_exist:
                assert conn is not None
                e.target_id = _at(e, lambda e=e: self._conditional_target(conn, base, e, e.if_none_exist or ""))
            elif e.method == "POST":
                e.target_id = e.target_id or str(uuid.uuid4())
            elif e.method == "PUT" and e.res_id is None:
                assert conn is not None
                e.target_id = _at(e, lambda e=e: self._conditional_target(conn, base, e, e.query))
            elif e.method in ("PUT", "PATCH", "DELETE"):
                e.target_id = e.res_id
            if e.full_url and e.target_id:
                references[e.full_url] = f"{e.res_type}/{e.target_id}"
        return references

    def _conditional_target(self, conn: Connection, base: str, e: Entry, condition: str) -> str:
        """The id a conditional create/update will end on: its match, or a new one."""
        matches = find_matches(conn, e.res_type, parse_condition(condition), base)
        if len(matches) > 1:
            raise FhirError.of(412, "conflict", f"The condition {e.res_type}?{condition} matches more than one resource")
        if matches:
            return matches[0]
        resource = _require_resource(e)
        if e.method == "POST":
            return str(uuid.uuid4())
        if "id" not in resource:
            resource["id"] = str(uuid.uuid4())  # no match and no id: create with an id fixed now
        return resource["id"]

    # -- one entry -------------------------------------------------------------
    def _execute(
        self, conn: Connection, base: str, e: Entry, merge: Merge | None, principal: Principal, capability: Callable[[str], bytes] | None
    ) -> Outcome:
        if e.method == "GET" or e.method == "HEAD":
            return self._read(conn, base, e, principal, capability)
        if e.method == "DELETE":
            if e.res_id is None:
                results = self.conditional.delete_in(conn, e.res_type, e.query, base)
                return Outcome(204, results[0].stored if len(results) == 1 else None, write=True)
            return Outcome(204, self.resources.delete_in(conn, e.res_type, e.res_id, e.if_match).stored, write=True)
        if e.method == "POST":
            resource = _require_resource(e)
            if e.if_none_exist:
                result = self.conditional.create_in(conn, e.res_type, resource, e.if_none_exist, base, e.target_id, prepared=settled(e))
            else:
                result = self.resources.create_in(conn, e.res_type, resource, e.target_id, prepared=settled(e))
            return self._written(e, result)
        if e.method == "PUT":
            resource = _require_resource(e)
            if e.res_id is None:
                result = self.conditional.update_in(conn, e.res_type, resource, e.query, base, e.if_match, merge)
            else:
                result = self.resources.update_in(conn, e.res_type, e.res_id, resource, e.if_match, prepared=settled(e))
            return self._written(e, result)
        # PATCH
        content_type, body = patch_body(e)
        res_id = e.res_id or self.conditional.resolve_id(conn, e.res_type, e.query, base, none_status=404)
        return self._written(e, self.resources.patch_in(conn, e.res_type, res_id, content_type, body, e.if_match))

    def _written(self, e: Entry, result: WriteResult) -> Outcome:
        if e.target_id and result.stored.res_id != e.target_id:
            # a concurrent client created the conditional match after we planned: references are stale
            raise FhirError.of(409, "conflict", "Another client wrote a matching resource meanwhile; retry the transaction")
        return Outcome(result.status, result.stored, result.stored.body, location=True, issues=result.issues, write=True)

    def _read(self, conn: Connection, base: str, e: Entry, principal: Principal, capability: Callable[[str], bytes] | None) -> Outcome:
        """A GET/HEAD entry, answered as the route answers it, from the transaction's own state."""
        kind, params = e.read_kind, parse_qsl(e.query)
        body: bytes | None = None
        if kind == "capabilities":
            if capability is None:
                raise FhirError.of(400, "not-supported", "metadata is not available here")
            body = metadata(base, params, capability, partial(terminology_engine, conn))
        elif kind.startswith("history-"):
            body = self.history.history(base, e.res_type or None, e.res_id, params, source=conn)
        elif e.res_type == "AuditEvent" and kind == "search-type":
            body = self.audit_trail.search(base, params, source=conn, compartment=e.compartment)
        elif e.res_type == "AuditEvent" and kind == "read":
            body = for_read(params).apply(self.audit_trail.read(e.res_id or "", source=conn), e.res_type)
        elif kind in ("search-type", "search-system"):
            search = self.search.search
            body = search(base, e.res_type or None, params, strict=False, principal=principal, source=conn, compartment=e.compartment)
        if body is not None:
            return Outcome(200, body=None if e.method == "HEAD" else body)
        assert e.res_id is not None
        if e.version is not None:
            row = repo.get_version(conn, e.res_type, e.res_id, int(e.version)) if is_version(e.version) else None
            if row is None or row.deleted:
                status = 410 if row is not None else 404
                raise FhirError.of(status, "not-found", f"{e.res_type}/{e.res_id}/_history/{e.version} is not available")
            stored = Stored(e.res_type, e.res_id, row.version, row.updated_us, row.body)
        else:
            stored = self.resources.read_in(conn, e.res_type, e.res_id)
        if not_modified(stored, e.if_none_match, e.if_modified_until):
            return Outcome(304, stored)
        assert stored.body is not None
        # _summary / _elements as on the route (search/subsetting.py; the ETag stays the version's)
        return Outcome(200, stored, None if e.method == "HEAD" else for_read(params).apply(stored.body, e.res_type))


def entry_response(base: str, o: Outcome, returns: str) -> bytes:
    """A ``transaction-response`` / ``batch-response`` entry. The request's ``Prefer: return=``
    applies to each write entry as to the write alone (http.html#ops): ``minimal`` leaves its
    resource out, ``OperationOutcome`` puts an OperationOutcome in ``response.outcome`` instead
    (its warnings, or what it stored). A read or an operation answers its result whatever it is."""
    response: dict[str, Any] = {"status": f"{o.status} {_REASON.get(o.status, '')}".strip()}
    if o.stored is not None and o.stored.version:
        if o.location:
            response["location"] = f"{o.stored.res_type}/{o.stored.res_id}/_history/{o.stored.version}"
        response["etag"] = o.stored.etag
        response["lastModified"] = to_instant(o.stored.updated_us)
    if o.issues and o.status >= 400:
        response["outcome"] = operation_outcome(o.issues)
    elif o.write and returns == OPERATION_OUTCOME:
        response["outcome"] = operation_outcome(write_outcome(o.stored, o.status, o.issues or [], deleted=not o.location))
    full_url = f"{base}/{o.stored.res_type}/{o.stored.res_id}" if o.stored is not None and o.body else None
    body = o.body if (returns == REPRESENTATION or not o.write) else None
    return bundles.entry(full_url if body else None, body, response=response)


# ----------------------------------------------------------------------------- helpers


def _at(entry: Entry, fn: Any) -> Any:
    """Run ``fn``; a failure names the entry (the transaction then rolls back)."""
    try:
        return fn()
    except FhirError as exc:
        exc.issues = [
            Issue(
                i.severity,
                i.code,
                f"{entry.where} ({entry.method} {entry.res_type}): {i.diagnostics}",
                f"{entry.where}.resource{(i.expression or '')[len(entry.res_type) :]}"
                if i.expression and i.expression.startswith(entry.res_type)
                else entry.where,
            )
            for i in exc.issues
        ]
        raise


def parse_entry(base: str, index: int, raw: Any) -> Entry:
    where = f"Bundle.entry[{index}]"
    if not isinstance(raw, dict) or not isinstance(raw.get("request"), dict):
        raise FhirError.of(400, "required", f"{where}.request is required in a transaction or batch", f"{where}.request")
    full_url = raw.get("fullUrl")
    if full_url is not None and not isinstance(full_url, str):
        raise FhirError.of(400, "structure", f"{where}.fullUrl must be a string (a uri)", f"{where}.fullUrl")
    request = raw["request"]
    method = str(request.get("method", "")).upper()
    url = request.get("url")
    if method not in _ORDER or not isinstance(url, str) or not url:
        raise FhirError.of(
            400, "invalid", f"{where}.request needs a method (GET, HEAD, POST, PUT, PATCH, DELETE) and a url", f"{where}.request"
        )
    if url.startswith(base + "/"):
        url = url[len(base) + 1 :]
    elif "://" in url.partition("?")[0]:  # a search value may well be a URL (identifier=https://...|...)
        raise FhirError.of(400, "not-supported", f"{where}.request.url points at another server: {url}", f"{where}.request.url")
    path, _, query = url.partition("?")
    path = canonical_path(path).lstrip("/")  # ``Patient/1/`` is ``Patient/1`` (url_forms)
    if method in ("GET", "HEAD"):
        path = search_get_path(path)  # ``Patient/_search?...`` is the search (url_forms)
    url = path + ("?" + query if query else "")
    parts = path.split("/") if path else []
    if parts and parts[-1].startswith("$"):
        return _operation_entry(where, index, raw, method, parts, query, url)
    read_kind = _read_kind(parts) if method in ("GET", "HEAD") else None
    compartment = None
    if read_kind is None and method in ("GET", "HEAD") and len(parts) == 3:
        # ``Patient/1/Encounter``, ``Patient/1/*``: a search in the compartment (an unknown type is
        # the 404 below, as on the route)
        compartment = Compartment(parts[0], parts[1])
        read_kind = "search-system" if parts[2] == "*" else "search-type"
        parts = parts[2:] if read_kind == "search-type" else []
    if read_kind in _SYSTEM_READS:  # metadata, _history, ?_type=...: no resource type
        return Entry(
            index, method, "", None, None, query, None, full_url, None, None, url=url, read_kind=read_kind, compartment=compartment
        )
    res_type = parts[0] if parts else ""
    if not is_resource_type(res_type):
        raise FhirError.of(404, "not-supported", f"{where}.request.url: '{res_type}' is not an R4 resource type", f"{where}.request.url")
    res_id = parts[1] if len(parts) > 1 and parts[1] != "_history" else None
    version = parts[3] if len(parts) == 4 and parts[2] == "_history" else None
    if read_kind is None if method in ("GET", "HEAD") else (len(parts) > 2 or (len(parts) == 2 and res_id is None)):
        raise FhirError.of(400, "not-supported", f"{where}.request.url '{url}' is not supported in a Bundle", f"{where}.request.url")
    if any(p.startswith("$") for p in parts):
        raise FhirError.of(400, "not-supported", f"{where}.request.url '{url}' is not supported in a Bundle", f"{where}.request.url")
    if method == "POST" and res_id is not None:
        raise FhirError.of(400, "invalid", f"{where}: POST goes to the type ({res_type}), not an instance", f"{where}.request.url")
    if method in ("PUT", "PATCH", "DELETE") and res_id is None and not query:
        raise FhirError.of(400, "invalid", f"{where}: {method} needs an id or a condition", f"{where}.request.url")
    return Entry(
        index=index,
        method=method,
        res_type=res_type,
        res_id=res_id,
        version=version,
        query=query,
        resource=raw.get("resource"),
        full_url=full_url,
        if_match=request.get("ifMatch"),
        if_none_exist=_if_none_exist(where, method, request.get("ifNoneExist"), query),
        url=url,
        read_kind=read_kind or "",
        if_none_match=_text(request.get("ifNoneMatch")),
        if_modified_until=_instant_end(request.get("ifModifiedSince")),
        compartment=compartment,
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _instant_end(value: Any) -> int | None:
    """The last microsecond an ``ifModifiedSince`` instant covers; None when absent or not an
    instant (ignored, as RFC 9110 ignores an invalid If-Modified-Since)."""
    if not isinstance(value, str):
        return None
    try:
        return datetime_range(value)[1]
    except ValueError:
        return None


#: operations with no Bundle form: the Bulk Data kick-off is the asynchronous request pattern
_NOT_IN_BUNDLES = frozenset({"export", "export-status", "export-file"})


def _operation_entry(where: str, index: int, raw: dict[str, Any], method: str, parts: list[str], query: str, url: str) -> Entry:
    """``[type]/[id]/$name``, ``[type]/$name`` or ``$name`` by GET or POST (the entry's resource is
    the operation's body), as on the operation routes."""
    name = parts[-1][1:]
    if len(parts) > 3 or any(p.startswith("$") for p in parts[:-1]) or method not in ("GET", "HEAD", "POST") or name in _NOT_IN_BUNDLES:
        raise FhirError.of(400, "not-supported", f"{where}.request: {method} {url} is not supported in a Bundle", f"{where}.request.url")
    res_type = parts[0] if len(parts) > 1 else ""
    if res_type and not is_resource_type(res_type):
        raise FhirError.of(404, "not-supported", f"{where}.request.url: '{res_type}' is not an R4 resource type", f"{where}.request.url")
    res_id = parts[1] if len(parts) == 3 else None
    return Entry(index, method, res_type, res_id, None, query, raw.get("resource"), raw.get("fullUrl"), None, None, url=url, operation=name)


#: GET entries that name no resource type
_SYSTEM_READS = frozenset({"capabilities", "history-system", "search-system"})


def _read_kind(parts: list[str]) -> str | None:
    """The interaction a GET of the path ``parts`` is, as on the routes (None: no such GET)."""
    if not parts:
        return "search-system"  # ``?_type=Patient,Observation``
    if len(parts) == 1:
        return {"metadata": "capabilities", "_history": "history-system"}.get(parts[0], "search-type")
    if len(parts) == 2:
        return "history-type" if parts[1] == "_history" else "read"
    if parts[2] != "_history":
        return None
    return "history-instance" if len(parts) == 3 else "vread" if len(parts) == 4 else None


def authorize_entry(principal: Principal, e: Entry) -> None:
    """What the route of ``e``'s request would require of ``principal`` (401/403)."""
    if e.interaction == "capabilities":
        return  # metadata is open to every client
    if e.operation is not None:
        # an operation runs its own reads and writes, not in the transaction's database transaction
        raise FhirError.of(400, "not-supported", f"${e.operation} cannot run inside a transaction; send it in a batch")
    if e.interaction == "search-system":
        principal.require_search_system(parse_qsl(e.query))
    else:
        principal.require(e.res_type or None, e.interaction, conditional=e.conditional)


def _if_none_exist(where: str, method: str, header: Any, query: str) -> str | None:
    """An entry's create condition: ``request.ifNoneExist`` or, for a POST, its url's search
    parameters (``service.conditional.create_condition``)."""
    if header is not None and not isinstance(header, str):
        raise FhirError.of(400, "invalid", f"{where}.request.ifNoneExist must be a string", f"{where}.request.ifNoneExist")
    if method != "POST":
        return header
    try:
        return create_condition(header, query)
    except FhirError as exc:
        raise FhirError.of(400, "invalid", f"{where}: {exc.issues[0].diagnostics}", f"{where}.request") from None


def _check_unique_targets(entries: list[Entry]) -> None:
    seen: dict[tuple[str, str], int] = {}
    for e in entries:
        if e.method in ("PUT", "PATCH", "DELETE") and e.res_id:
            key = (e.res_type, e.res_id)
            if key in seen:
                raise FhirError.of(400, "invalid", f"{e.where} and Bundle.entry[{seen[key]}] both change {e.res_type}/{e.res_id}", e.where)
            seen[key] = e.index
    full_urls = [e.full_url for e in entries if e.full_url]
    if len(full_urls) != len(set(full_urls)):
        raise FhirError.of(400, "invalid", "Two entries of the transaction share a fullUrl")


def _require_resource(e: Entry) -> dict[str, Any]:
    if not isinstance(e.resource, dict):
        raise FhirError.of(400, "required", f"{e.where}.resource is required for {e.method}", f"{e.where}.resource")
    return e.resource


def patch_body(e: Entry) -> tuple[str, Any]:
    resource = _require_resource(e)
    if resource.get("resourceType") == "Parameters":
        return "application/fhir+json", resource
    media = str(resource.get("contentType", "")).split(";")[0].strip().lower()
    if resource.get("resourceType") == "Binary" and media in (JSON_PATCH, MERGE_PATCH):
        try:
            return media, jsonio.loads_client(base64.b64decode(resource.get("data", "")))
        except jsonio.DuplicateKey as exc:
            raise FhirError.of(400, "structure", f"{e.where}: Binary.data: {exc}", f"{e.where}.resource.data") from None
        except (ValueError, jsonio.JsonError):
            raise FhirError.of(400, "invalid", f"{e.where}: Binary.data is not a base64 JSON document") from None
    raise FhirError.of(400, "invalid", f"{e.where}: PATCH takes a Parameters (FHIRPath Patch) or a Binary JSON Patch or JSON Merge Patch")


def _is_conditional(value: str, references: dict[str, str]) -> bool:
    """A conditional reference (``Type?query``): not a Bundle fullUrl (those ``references`` maps)
    nor a URN."""
    return "?" in value and value not in references and not value.startswith(("urn:uuid:", "urn:oid:"))


def _rewrite(
    holders: list[dict[str, Any]], references: dict[str, str], resolve: Any, changed: list[tuple[dict, str]] | None = None
) -> None:
    """Replace bundle-local and conditional references in ``holders`` (``reference_holders`` of a
    resource; each replaced value's holder and old value appended to ``changed``, when given)."""
    for holder in holders:
        value = holder["reference"]
        if value in references:
            new = references[value]
        elif value.startswith(("urn:uuid:", "urn:oid:")):
            raise FhirError.of(400, "not-found", f"Reference {value} matches no fullUrl in the Bundle")
        elif _is_conditional(value, references):
            new = resolve(value)
        else:
            continue
        if new:
            if changed is not None:
                changed.append((holder, value))
            holder["reference"] = new


def _raising(resolved: dict[str, str | FhirError | None]) -> Callable[[str], str | None]:
    """A ``resolve`` for ``_rewrite``: a reference's target, or the error resolving it raised
    (raised anew each time: ``_at`` names the entry in the issues it raises)."""

    def resolve(ref: str) -> str | None:
        target = resolved.get(ref)
        if isinstance(target, FhirError):
            raise FhirError(target.status, list(target.issues), dict(target.headers))
        return target

    return resolve


def _conditional_references(holder_lists: list[list[dict[str, Any]]], references: dict[str, str]) -> list[str]:
    """The distinct conditional references (``Type?query``) among the resources' reference
    holders, in order."""
    found: dict[str, None] = {}
    for holders in holder_lists:
        for holder in holders:
            if _is_conditional(holder["reference"], references):
                found[holder["reference"]] = None
    return list(found)


@dataclass
class Helped:
    """An entry the prepare helper validates and indexes: its answer, read when the entry runs;
    ``here`` prepares it in this process when the helper gives none."""

    pending: Pending
    k: int
    res_id: str
    here: Callable[[], list[Prepared]]

    def get(self) -> Prepared:
        answer = self.pending.answer(self.k)
        if answer is None:
            return self.here()[0]
        warnings, _, rows = answer
        return Prepared(self.res_id, warnings, error_of(answer), rows)


def settled(entry: Entry) -> Prepared | None:
    """The entry's validation, the helper's answer read first if it is the helper's."""
    if isinstance(entry.prepared, Helped):
        entry.prepared = entry.prepared.get()
    return entry.prepared


@dataclass
class _Early:
    """References rewritten before the write lock (``BundleService._rewrite_early``)."""

    #: fullUrl -> ``Type/id``
    references: dict[str, str]
    #: conditional reference -> ``Type/id`` (or None: left as it is)
    resolved: dict[str, str | FhirError | None]
    #: (holder, old value) of every reference replaced
    changed: list[tuple[dict, str]]
    #: entry index -> the reference holders of its resource (``reference_holders``)
    holders: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    #: the change log's last number when the conditional references were resolved (None: none were)
    seq: int | None = None

    def restore(self) -> None:
        """Every replaced reference back as it was sent."""
        for holder, value in reversed(self.changed):
            holder["reference"] = value
        self.changed.clear()
