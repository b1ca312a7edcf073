"""The one interaction pipeline: every way in becomes an :class:`Interaction` handled here.

HTTP routes, the hot read path, every batch and transaction entry, every operation
and the CLI importer hand an interaction (kind, type, id, parameters, body, the
relevant headers, the principal) to :meth:`Pipeline.handle` and get an
:class:`Answer` back. This is the only place that decides authorization (the
interaction itself, every resource an operation writes, every resource that
leaves: includes, chains and ``_has``, views, ``$everything``), and every write
goes through :meth:`Pipeline.writer`: the one asynchronous write path (group
commit, never blocking the event loop on another process's SQLite lock) that also
attributes the change-log rows to the client and writes the request's AuditEvent
in the write's own transaction.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from sqlalchemy.engine import Connection

from fhir_server.audit.events import AuditRecord
from fhir_server.audit.recorder import record_in
from fhir_server.audit.request_rows import audited_query, classify
from fhir_server.auth.guard import REALM
from fhir_server.auth.tokens import www_authenticate
from fhir_server.errors import FhirError, Issue
from fhir_server.operations import catalog  # noqa: F401  (registers every operation)
from fhir_server.operations.registry import Operation, OperationCall, find
from fhir_server.resource_types import interactions_for, is_resource_type
from fhir_server.search.compartment import Compartment
from fhir_server.search.subsetting import for_read
from fhir_server.service.access import Principal
from fhir_server.service.capability import metadata
from fhir_server.service.context import Services, WriteRunner
from fhir_server.service.results import REPRESENTATION, Stored, WriteResult, not_modified
from fhir_server.service.transaction import Entry, Outcome, parse_entry, patch_body
from fhir_server.storage import changelog
from fhir_server.storage.group_commit import Writes
from fhir_server.urlcodec import parse_qsl

T = TypeVar("T")

#: interactions that write
WRITES = frozenset({"create", "update", "patch", "delete"})
#: handlers that run their own checks (shared with the hot path, or an operation's own)
_SELF_CHECKED = frozenset({"read", "search-type", "operation"})


@dataclass(frozen=True, slots=True)
class AuditContext:
    """What the request's AuditEvent needs besides the principal and the status (raw values,
    as ``audit.request_rows.RawRequest`` holds them)."""

    method: str
    path: str
    query: bytes = b""
    user_agent: bytes | None = None
    request_id: bytes | None = None
    address: str | None = None

    def record(self, principal: Principal, status: int, written_id: str | None) -> AuditRecord:
        """The request's AuditEvent; a create or conditional write names the resource it wrote
        (its URL cannot)."""
        interaction, res_type, res_id, operation = classify(self.method, self.path)
        if res_id is None and interaction in ("create", "update", "patch"):
            res_id = written_id
        return AuditRecord(
            interaction,
            status,
            res_type,
            res_id,
            query=audited_query(interaction, res_id, self.path, self.query.decode("latin-1")) or None,
            operation=operation,
            client_id=principal.client_id,
            organization_id=principal.organization_id,
            address=self.address,
            user_agent=self.user_agent.decode("latin-1") if self.user_agent is not None else None,
            request_id=self.request_id.decode("latin-1") if self.request_id is not None else None,
        )

    def for_entry(self, method: str, url: str) -> AuditContext:
        """The context of a batch entry: the entry's own method and URL, the request's client."""
        path, _, query = url.partition("?")
        return AuditContext(method, "/fhir/" + path.lstrip("/"), query.encode(), self.user_agent, self.request_id, self.address)


@dataclass(slots=True)
class Interaction:
    """One FHIR interaction, transport-free.

    ``kind`` is a restful-interaction code (``read``, ``vread``, ``update``, ``patch``,
    ``delete``, ``create``, ``search-type``, ``search-system``, ``history-instance``,
    ``history-type``, ``history-system``, ``transaction`` (transaction and batch
    Bundles) or ``operation``. A conditional write has no ``res_id`` and its
    ``condition`` (the query string; If-None-Exist for a create).
    """

    kind: str
    base: str
    principal: Principal
    res_type: str | None = None
    res_id: str | None = None
    version: str | None = None
    params: list[tuple[str, str]] = field(default_factory=list)
    condition: str | None = None
    body: Any = None
    #: PATCH: application/json-patch+json or application/fhir+json (FHIRPath Patch)
    patch_type: str | None = None
    if_match: str | None = None
    #: Prefer: handling=strict (unknown search parameters are errors)
    strict: bool = False
    #: Prefer: handling=lenient asked for (history then ignores parameters it does not take)
    lenient: bool = False
    #: Prefer: return= of a batch or transaction, applied to each write entry (results.MINIMAL, ...)
    returns: str = REPRESENTATION
    #: operations: the name without "$", the HTTP method, the request headers
    operation: str | None = None
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    #: the request's AuditEvent is written with a write in its transaction (None: no audit)
    audit: AuditContext | None = None
    #: a batch entry: conditional references in its resource are resolved when it is written
    resolve_references: bool = False
    #: set once the request's AuditEvent was committed with the write
    audited: bool = False
    #: a batch entry's HEAD: answered as its GET, without the body
    head: bool = False
    #: set by the interaction check once passed (routes check before reading a body; ``handle``
    #: does not check again)
    checked: bool = False
    #: a search in a compartment (``Patient/1/Encounter``: search-type; ``Patient/1/*``: search-system)
    compartment: Compartment | None = None


class WritePolicy(Protocol):
    """Extra rules of one resource type's writes (Subscription: subscriptions/policy.py).

    ``check`` runs before the write transaction (it may await: DNS), ``wrap`` inside it around
    the write itself (create, update, delete). Such writes run alone (never re-run by group
    commit); PATCH and transaction-Bundle entries of the type are refused (``Pipeline``)."""

    async def check(self, i: Interaction, resource: dict[str, Any]) -> None: ...

    def wrap(self, conn: Connection, i: Interaction, work: Callable[[Connection], T]) -> T: ...


@dataclass(slots=True)
class Answer:
    status: int
    #: the body to send (stored bytes, a Bundle, an OperationOutcome); None: no body
    body: bytes | None = None
    #: the resource version a read or write is about (ETag, Last-Modified, Location)
    stored: Stored | None = None
    #: warnings of a write (Prefer: return=OperationOutcome)
    issues: list[Issue] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)


class Pipeline:
    """Authorizes, runs and records every interaction (see the module docstring)."""

    def __init__(self, services: Services, writes: Writes, *, audit_writes: bool, capability: Callable[[str], bytes] | None = None) -> None:
        self.services = services
        #: base URL -> the CapabilityStatement's bytes (``GET metadata``, on the route and in Bundles)
        self.capability = capability
        self.writes = writes
        #: whether writes record the request's AuditEvent in their own transaction
        self.audit_writes = audit_writes
        #: per resource type: extra rules of its writes (registered by build_state)
        self.policies: dict[str, WritePolicy] = {}
        #: the buffered audit queue (set by the app once its recorder runs): the AuditEvent of
        #: each batch entry no write transaction recorded (reads, operations, failures)
        self.queue_audit: Callable[[AuditRecord], None] | None = None
        self._handlers: dict[str, Callable[[Interaction], Awaitable[Answer]]] = {
            "read": self._read,
            "vread": self._vread,
            "history-instance": self._history,
            "history-type": self._history,
            "history-system": self._history,
            "search-type": self._search,
            "search-system": self._search_system,
            "capabilities": self._capabilities,
            "create": self._create,
            "update": self._update,
            "patch": self._patch,
            "delete": self._delete,
            "transaction": self._bundle,
            "operation": self._operation,
        }

    async def handle(self, i: Interaction) -> Answer:
        """Authorize ``i``, run it, record it; FhirError for every refusal and failure."""
        try:
            handler = self._handlers[i.kind]
        except KeyError:
            raise FhirError.of(400, "not-supported", f"Unknown interaction {i.kind!r}") from None
        if i.res_type is not None and i.kind not in _SELF_CHECKED and not i.checked:
            self._check_interaction(i)
        return await handler(i)

    # -- authorization of the interaction itself ---------------------------------------
    def _check_interaction(self, i: Interaction) -> None:
        """A known type (404), an interaction it supports (405), a caller allowed to do it (401/403)."""
        res_type = i.res_type or ""
        if not is_resource_type(res_type):
            raise FhirError.of(404, "not-supported", f"'{res_type}' is not an R4 resource type this server knows")
        if i.kind not in interactions_for(res_type):
            raise FhirError(405, [Issue("error", "not-supported", f"{i.kind} is not supported on {res_type}")], {"Allow": "GET"})
        i.principal.require(res_type, i.kind, conditional=bool(i.condition))
        i.checked = True

    # -- the one write path ---------------------------------------------------------------
    def writer(self, i: Interaction) -> WriteRunner:
        """The write runner of interaction ``i``: each work runs in a group-committed write
        transaction with its change-log rows attributed to the client and (for an audited
        request) the request's AuditEvent inserted in that same transaction."""

        async def run(
            work: Callable[[Connection], T],
            *,
            new_resources: int = 0,
            alone: bool = False,
            status: Callable[[T], int] = _status_of,
        ) -> T:
            audit = i.audit if self.audit_writes else None

            def recorded(conn: Connection) -> T:
                with changelog.acting_as(conn, i.principal.stored_client_id):
                    result = work(conn)
                if audit is not None:
                    created = result.stored.res_id if isinstance(result, WriteResult) else None
                    record_in(conn, audit.record(i.principal, status(result), created))
                return result

            result = await self.writes.run(recorded, new_resources=new_resources, alone=alone)
            i.audited = audit is not None
            return result

        return run

    # -- reads ------------------------------------------------------------------------------
    async def _read(self, i: Interaction) -> Answer:
        return _subsetted(self.read_by_id(i.principal, i.res_type or "", i.res_id or ""), i)

    def read_by_id(self, principal: Principal, res_type: str, res_id: str) -> Answer:
        """A read by id, authorized: what ``handle`` does for a ``read`` interaction, callable
        without building one or an event-loop hop (the hot read path, ~1 µs of a ~25 µs read)."""
        if not is_resource_type(res_type):
            raise FhirError.of(404, "not-supported", f"'{res_type}' is not an R4 resource type this server knows")
        principal.require(res_type, "read")  # every type supports read (resource_types.interactions_for)
        s = self.services
        if res_type == "AuditEvent":
            return Answer(200, s.audit_trail.read(res_id))
        stored = s.resources.read(res_type, res_id)
        return Answer(200, stored.body, stored)

    def authorize(self, i: Interaction) -> None:
        """The checks ``handle`` runs first: for routes that must refuse before reading a body."""
        self._check_interaction(i)

    async def _vread(self, i: Interaction) -> Answer:
        stored = self.services.resources.vread(i.res_type or "", i.res_id or "", i.version or "")
        return _subsetted(Answer(200, stored.body, stored), i)

    async def _history(self, i: Interaction) -> Answer:
        if i.kind == "history-system":
            i.principal.require(None, "history-system")
        return Answer(200, self.services.history.history(i.base, i.res_type, i.res_id, i.params, strict=i.strict, lenient=i.lenient))

    async def _search(self, i: Interaction) -> Answer:
        return Answer(200, self.search_now(i))

    def search_now(self, i: Interaction) -> bytes:
        """The searchset Bundle of a type-level search, authorized (the hot path calls it directly)."""
        if not i.checked:
            self._check_interaction(i)
        s = self.services
        if i.res_type == "AuditEvent":
            return s.audit_trail.search(i.base, i.params, strict=i.strict, compartment=i.compartment)
        return s.search.search(i.base, i.res_type, i.params, strict=i.strict, principal=i.principal, compartment=i.compartment)

    async def _search_system(self, i: Interaction) -> Answer:
        i.principal.require_search_system(i.params)
        search = self.services.search.search
        return Answer(200, search(i.base, None, i.params, strict=i.strict, principal=i.principal, compartment=i.compartment))

    async def _capabilities(self, i: Interaction) -> Answer:
        if self.capability is None:
            raise FhirError.of(400, "not-supported", "metadata is not available here")
        return Answer(200, metadata(i.base, i.params, self.capability, self.services.terminology))

    # -- writes -----------------------------------------------------------------------------
    async def _create(self, i: Interaction) -> Answer:
        s = self.services
        res_type, resource = i.res_type or "", _resource(i)
        run = self.writer(i)
        policy = self.policies.get(res_type)
        if policy is not None:
            await policy.check(i, resource)
            if i.condition:
                condition = i.condition
                result = await run(
                    lambda conn: policy.wrap(conn, i, lambda c: s.conditional.create_in(c, res_type, resource, condition, i.base)),
                    alone=True,
                )
            else:
                result = await run(lambda conn: policy.wrap(conn, i, lambda c: s.resources.create_in(c, res_type, resource)), alone=True)
        elif i.condition:
            result = await run(
                lambda conn: s.conditional.create_in(conn, res_type, self._resolved(conn, i, resource), i.condition or "", i.base)
            )
        elif i.resolve_references:
            result = await run(lambda conn: s.resources.create_in(conn, res_type, self._resolved(conn, i, resource)))
        else:
            # validated and indexed here, before the write lock (storage/group_commit.py)
            prepared = s.resources.prepare_create(res_type, resource, index=True)
            if prepared.error is not None:
                raise prepared.error
            result = await run(
                lambda conn: s.resources.create_in(conn, res_type, resource, prepared.res_id, prepared=prepared),
                new_resources=1,
            )
        return _written(result)

    async def _update(self, i: Interaction) -> Answer:
        s = self.services
        res_type, resource = i.res_type or "", _resource(i)
        run = self.writer(i)
        policy = self.policies.get(res_type)
        if policy is not None:
            await policy.check(i, resource)
            if i.res_id is None:
                raise FhirError.of(400, "not-supported", f"{res_type} is updated by id only (no conditional update)")
            target = i.res_id
            result = await run(
                lambda conn: policy.wrap(conn, i, lambda c: s.resources.update_in(c, res_type, target, resource, i.if_match)), alone=True
            )
        elif i.res_id is None:
            condition = _condition(i)
            result = await run(
                lambda conn: s.conditional.update_in(conn, res_type, self._resolved(conn, i, resource), condition, i.base, i.if_match)
            )
        else:
            res_id = i.res_id
            # validated (and, unless a batch entry's references are still to be resolved, indexed)
            # here, before the write lock, as a create is
            prepared = s.resources.prepare_update(res_type, res_id, resource, index=not i.resolve_references)
            result = await run(
                lambda conn: s.resources.update_in(conn, res_type, res_id, self._resolved(conn, i, resource), i.if_match, prepared=prepared)
            )
        return _written(result)

    async def _patch(self, i: Interaction) -> Answer:
        s = self.services
        res_type, patch_type = i.res_type or "", i.patch_type or "application/fhir+json"

        def work(conn: Connection) -> WriteResult:
            res_id = i.res_id or s.conditional.resolve_id(conn, res_type, _condition(i), i.base, none_status=404)
            return s.resources.patch_in(conn, res_type, res_id, patch_type, i.body, i.if_match)

        return _written(await self.writer(i)(work))

    async def _delete(self, i: Interaction) -> Answer:
        s = self.services
        res_type = i.res_type or ""
        run = self.writer(i)
        policy = self.policies.get(res_type)
        if policy is not None:
            if i.res_id is None:
                raise FhirError.of(400, "not-supported", f"{res_type} is deleted by id only (no conditional delete)")
            res_id = i.res_id
            result = await run(
                lambda conn: policy.wrap(conn, i, lambda c: s.resources.delete_in(c, res_type, res_id, i.if_match)), alone=True
            )
            return Answer(204, stored=result.stored if result.stored.version else None)
        if i.res_id is None:
            condition = _condition(i)
            results = await run(lambda conn: s.conditional.delete_in(conn, res_type, condition, i.base), status=lambda _: 204)
            stored = results[0].stored if len(results) == 1 else None
            return Answer(204, stored=stored)
        res_id = i.res_id
        result = await run(lambda conn: s.resources.delete_in(conn, res_type, res_id, i.if_match))
        return Answer(204, stored=result.stored if result.stored.version else None)

    def _resolved(self, conn: Connection, i: Interaction, resource: dict[str, Any]) -> dict[str, Any]:
        """A batch entry's resource with its conditional references resolved (in ``conn``)."""
        if i.resolve_references:
            self.services.bundles.resolve_conditional_references(conn, i.base, resource, i.principal)
        return resource

    # -- Bundles ----------------------------------------------------------------------------
    async def _bundle(self, i: Interaction) -> Answer:
        bundles = self.services.bundles
        kind, raw_entries = bundles.checked(i.body)
        if kind == "transaction":
            entries = bundles.parse_entries(i.base, raw_entries)  # once, for every step below
            self._refuse_policed_entries(entries)
            body = await bundles.transaction(
                i.base,
                entries,
                principal=i.principal,
                write=self.writer(i),
                returns=i.returns,
                capability=self.capability,
            )
            self._audit_transaction_reads(i, entries)
            return Answer(200, body)
        outcomes = [await self._batch_entry(i, index, raw) for index, raw in enumerate(raw_entries)]
        return Answer(200, bundles.response(i.base, "batch", outcomes, i.returns))

    def _refuse_policed_entries(self, entries: list[Entry]) -> None:
        """Writes of a type with a write policy run alone with their checks: not in a transaction."""
        for e in entries:
            if e.method not in ("GET", "HEAD") and e.res_type in self.policies:
                raise FhirError.of(
                    422,
                    "not-supported",
                    f"{e.res_type} cannot be written inside a transaction Bundle: use its own request or a batch",
                    e.where,
                )

    async def _batch_entry(self, parent: Interaction, index: int, raw: Any) -> Outcome:
        """One batch entry, as its own interaction through :meth:`handle` (its own transaction)."""
        sub: Interaction | None = None
        try:
            sub, e = _entry_interaction(parent, index, raw)
            answer = await self.handle(sub)
        except FhirError as exc:
            self._audit_entry(sub, exc.status)
            return Outcome(exc.status, issues=exc.issues)
        stored = answer.stored if sub.kind in ("read", "vread") else None
        if stored is not None and not_modified(stored, e.if_none_match, e.if_modified_until):  # http.html#cread
            answer = Answer(304, stored=stored)
        self._audit_entry(sub, answer.status)
        if sub.kind in WRITES:
            return Outcome(
                answer.status,
                answer.stored,
                answer.stored.body if answer.stored else None,
                location=sub.kind != "delete",
                issues=answer.issues,
                write=True,
            )
        return Outcome(answer.status, answer.stored, None if sub.head else answer.body)

    def _audit_transaction_reads(self, i: Interaction, entries: list[Entry]) -> None:
        """The GET/HEAD entries of a committed transaction, audited as those reads alone, with the
        status each answered (200, or 304 to an ``ifNoneMatch`` / ``ifModifiedSince``); its writes
        are in its own event and the change log; a failed transaction returned nothing."""
        if i.audit is None or self.queue_audit is None:
            return
        for e in entries:
            if e.method in ("GET", "HEAD"):
                self.queue_audit(i.audit.for_entry(e.method, e.url).record(i.principal, e.answered or 200, None))

    def _audit_entry(self, sub: Interaction | None, status: int) -> None:
        """A batch entry is audited as the same request alone would be (docs/audit.md): a write
        with its transaction, anything else (a read, a search, an operation, a failure) queued."""
        if sub is not None and sub.audit is not None and not sub.audited and self.queue_audit is not None:
            self.queue_audit(sub.audit.record(sub.principal, status, None))

    # -- operations -------------------------------------------------------------------------
    def authorize_operation(self, i: Interaction) -> Operation:
        """The operation ``i`` calls: known (404), allowed (401/403), by a method it takes (405)."""
        res_type = i.res_type
        if res_type is not None and not is_resource_type(res_type):
            raise FhirError.of(404, "not-supported", f"'{res_type}' is not an R4 resource type this server knows")
        name = i.operation or ""
        operation = find(name, res_type, instance=i.res_id is not None)
        if not operation.discovery:
            i.principal.require_operation(res_type, name, affects_state=operation.affects_state)
        if i.method == "GET" and operation.affects_state:
            raise FhirError(405, FhirError.of(405, "not-supported", f"${name} changes data: use POST").issues, {"Allow": "POST"})
        return operation

    # -- Bulk Data (the HTTP side is bulk/routes.py: the async request pattern) -----------
    def authorize_export(
        self,
        principal: Principal,
        res_type: str | None,
        requested: list[str] | None,
        candidates: list[str],
    ) -> list[str] | None:
        """The types an ``$export`` kick-off may record (None: every type, open access).

        ``requested`` (``_type``): each needs the export actions (read and search), else 403.
        Without it a restricted token gets the ``candidates`` it may export (Bulk Data limits an
        export to what the client may see; a wildcard does not cover AuditEvent); at the system
        level only a wildcard token may ask for "every type"."""
        if res_type is not None:
            principal.require_operation(res_type, "export", affects_state=False)
        if requested:
            for t in requested:
                principal.require_operation(t, "export", affects_state=False)
            return requested
        if not principal.restricted:
            return None
        if res_type is None:
            principal.require_operation(None, "export", affects_state=False)
        types = [t for t in candidates if principal.may_operate(t, "export")]
        if not types:
            text = "The access token's scopes allow read and search on no resource type this export can return"
            raise FhirError(403, [Issue("error", "forbidden", text)], {"WWW-Authenticate": www_authenticate(REALM, "insufficient_scope")})
        return types

    def authorize_export_file(self, principal: Principal, res_type: str) -> None:
        """403 unless ``principal`` may read ``res_type``: an export file's download, whichever token
        of the job's client asks (checked before looking for the file: a 403 tells nothing)."""
        principal.require(res_type, "read")

    async def _operation(self, i: Interaction) -> Answer:
        operation = self.authorize_operation(i)
        res_type = i.res_type
        call = OperationCall(
            base=i.base,
            method=i.method,
            res_type=res_type,
            res_id=i.res_id,
            query=i.params,
            body=i.body,
            headers=i.headers,
            principal=i.principal,
            write=self.writer(i),
        )
        result = operation.handler(self.services, call)
        if inspect.isawaitable(result):
            result = await result
        return Answer(result.status, result.body, headers=dict(result.headers))


def _entry_interaction(parent: Interaction, index: int, raw: Any) -> tuple[Interaction, Entry]:
    """A batch entry as an interaction of its own, by the parent's principal (and the entry)."""
    e = parse_entry(parent.base, index, raw)
    audit = parent.audit.for_entry(e.method, e.url) if parent.audit is not None else None
    if e.operation is not None:  # as the $operation routes build it (api/operations.py)
        op = Interaction(
            "operation",
            parent.base,
            parent.principal,
            e.res_type or None,
            e.res_id,
            params=[(k, v) for k, v in parse_qsl(e.query) if k not in ("_format", "_pretty")],
            body=e.resource,
            strict=parent.strict,
            operation=e.operation,
            method="GET" if e.method == "HEAD" else e.method,  # HEAD is the GET without the body
            audit=audit,
            head=e.method == "HEAD",
        )
        return op, e
    reads = e.method in ("GET", "HEAD")
    condition = e.if_none_exist if e.method == "POST" else (e.query if e.res_id is None and not reads else None)
    sub = Interaction(
        e.interaction,
        parent.base,
        parent.principal,
        e.res_type or None,
        e.res_id,
        e.version,
        params=parse_qsl(e.query),
        condition=condition or None,
        body=e.resource,
        if_match=e.if_match,
        strict=parent.strict,
        lenient=parent.lenient,
        returns=parent.returns,
        method=e.method,
        resolve_references=True,
        audit=audit,
        head=e.method == "HEAD",
        compartment=e.compartment,
    )
    if e.method == "PATCH":
        sub.patch_type, sub.body = patch_body(e)
    return sub, e


def _subsetted(answer: Answer, i: Interaction) -> Answer:
    """A read's or vread's ``_summary`` / ``_elements`` (search/subsetting.py, as on a search),
    applied once the caller may read it. The ETag stays the version's: it names the version the
    subset was taken from (HAPI does the same; a client must not write a SUBSETTED resource back)."""
    if i.params and answer.body is not None:
        answer.body = for_read(i.params).apply(answer.body, i.res_type or "")
    return answer


def _status_of(result: Any) -> int:
    return result.status if isinstance(result, WriteResult) else 200


def _written(result: WriteResult) -> Answer:
    return Answer(result.status, result.stored.body, result.stored, result.issues)


def _resource(i: Interaction) -> dict[str, Any]:
    if not isinstance(i.body, dict):
        raise FhirError.of(400, "structure", "The body must be a JSON object (a FHIR resource)")
    return i.body


def _condition(i: Interaction) -> str:
    if not i.condition:
        raise FhirError.of(400, "invalid", "This interaction needs an id in the URL or search parameters as a condition")
    return i.condition
