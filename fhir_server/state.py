"""The server's state: settings, database, the services and the one pipeline in front of them.

``build_state`` wires them together; the app (``app.py``) and the CLI both use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fhir_server.audit.recorder import AuditRecorder, NullRecorder
from fhir_server.auth.tokens import TokenVerifier, load_signing_key
from fhir_server.config import Settings
from fhir_server.satusehat import setup as _satusehat  # noqa: F401  (registers the SATUSEHAT operations)
from fhir_server.service.audit_trail import AuditTrail
from fhir_server.service.capability import capability_bytes, metadata
from fhir_server.service.conditional import ConditionalService
from fhir_server.service.context import Services
from fhir_server.service.history import HistoryService
from fhir_server.service.indexing import index_resource, index_rows
from fhir_server.service.merge import MergeService
from fhir_server.service.mpi import MpiService
from fhir_server.service.pipeline import Pipeline
from fhir_server.service.resources import ResourceService
from fhir_server.service.search import SearchService
from fhir_server.service.transaction import BundleService
from fhir_server.storage.db import Database
from fhir_server.storage.group_commit import BlockingWrites, GroupCommitter, Writes
from fhir_server.subscriptions.setup import install_subscriptions


@dataclass
class ServerState:
    """What the routes reach through ``request.app.state.fhir``: settings, the pipeline and the
    services behind it (the routes use the pipeline; the services are for start-up and tests)."""

    settings: Settings
    db: Database
    services: Services
    pipeline: Pipeline

    _verifier: TokenVerifier | None = None
    recorder: AuditRecorder | NullRecorder | None = None
    #: the subscription delivery worker of this process (started by the app's lifespan)
    subscription_worker: Any = None
    #: the SATUSEHAT sync worker of this process (None: sync off)
    satusehat_worker: Any = None

    @property
    def resources(self) -> ResourceService:
        return self.services.resources

    @property
    def search(self) -> SearchService:
        return self.services.search

    @property
    def conditional(self) -> ConditionalService:
        return self.services.conditional

    @property
    def bundles(self) -> BundleService:
        return self.services.bundles

    @property
    def history(self) -> HistoryService:
        return self.services.history

    def metadata_bytes(self, base: str, params: list[tuple[str, str]]) -> bytes:
        """``GET metadata``: the CapabilityStatement, or with ``mode=terminology`` the TerminologyCapabilities."""
        assert self.pipeline.capability is not None
        return metadata(base, params, self.pipeline.capability, self.services.terminology)

    def token_verifier(self) -> TokenVerifier:
        """The access-token verifier (token mode); the signing key is read once per process."""
        if self._verifier is None:
            with self.db.write() as conn:
                key = load_signing_key(conn, self.settings.auth_secret or None)
            self._verifier = TokenVerifier(key, issuer=self.settings.base_url or None)
        return self._verifier


def build_state(settings: Settings, *, blocking_writes: bool = False, background: bool = False) -> ServerState:
    """The services and the pipeline. ``blocking_writes``: for the CLI (no event loop), writes
    run at once in their own transactions instead of the loop's group commit; ``background``: for
    a background process beside the server (the SATUSEHAT sync's), whose group transactions stay
    short and give way after each, so that on SQLite the server's requests never wait long for the
    write lock (measured: 25 items per transaction cost one client ~35 % of its throughput)."""
    db = Database.from_url(
        settings.effective_database_url,
        pool_size=settings.pool_size,
        busy_timeout=settings.sqlite_busy_timeout,
        statement_timeout=settings.statement_timeout,
    )
    mpi = MpiService(db)
    resources = ResourceService(
        db,
        mpi.flagging(index_resource) if settings.mpi_flag_duplicates else index_resource,
        r4b_model_check=settings.r4b_model_check,
        region_codes=settings.region_codes,
        prepare_index=index_rows,
    )
    conditional = ConditionalService(resources, allow_multiple_delete=settings.conditional_delete_multiple)
    search = SearchService(db, settings.default_count, settings.max_count)
    history = HistoryService(db, settings.default_count, settings.max_count)
    audit_trail = AuditTrail(db, settings.default_count, settings.max_count)
    services = Services(
        resources=resources,
        conditional=conditional,
        history=history,
        search=search,
        bundles=BundleService(resources, conditional, search, history, audit_trail, max_entries=settings.max_bundle_entries),
        audit_trail=audit_trail,
        mpi=mpi,
        merge=MergeService(resources),
        default_count=settings.default_count,
        max_count=settings.max_count,
    )
    # the one write path: the event loop's group commit (storage/group_commit.py), or
    # writes at once for the CLI
    if blocking_writes:
        writes: Writes = BlockingWrites(db)
    else:
        writes = GroupCommitter(db, max_batch=4, background=True) if background else GroupCommitter(db)
    pipeline = Pipeline(
        services,
        writes,
        audit_writes=settings.audit and not blocking_writes,
        capability=lambda base: capability_bytes(base, settings.conditional_delete_multiple, settings.auth == "token"),
    )
    install_subscriptions(pipeline, settings)
    return ServerState(settings=settings, db=db, services=services, pipeline=pipeline)
