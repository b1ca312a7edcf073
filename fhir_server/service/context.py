"""What operations and the pipeline work with: the services, and the one write path's runner."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from sqlalchemy.engine import Connection

from fhir_server.service.audit_trail import AuditTrail
from fhir_server.service.conditional import ConditionalService
from fhir_server.service.history import HistoryService
from fhir_server.service.merge import MergeService
from fhir_server.service.mpi import MpiService
from fhir_server.service.resources import ResourceService
from fhir_server.service.search import SearchService
from fhir_server.service.transaction import BundleService
from fhir_server.storage.stored_terminology import terminology_engine
from terminology.engine import TerminologyEngine

T = TypeVar("T")


class WriteRunner(Protocol):
    """Runs ``work`` in a write transaction of the one write path (``Pipeline.writer``).

    ``status(result)``: the HTTP status the result stands for (the AuditEvent's outcome).
    """

    async def __call__(
        self,
        work: Callable[[Connection], T],
        *,
        new_resources: int = 0,
        alone: bool = False,
        status: Callable[[T], int] = ...,
    ) -> T: ...


@dataclass(frozen=True)
class Services:
    """The transport-free services an interaction or operation may use (never the app)."""

    resources: ResourceService
    conditional: ConditionalService
    history: HistoryService
    search: SearchService
    bundles: BundleService
    audit_trail: AuditTrail
    mpi: MpiService
    merge: MergeService
    default_count: int
    max_count: int

    def terminology(self) -> TerminologyEngine:
        """The terminology engine: the packaged content and the CodeSystems, ValueSets and
        ConceptMaps stored in this database, as of its last commit (storage/stored_terminology.py)."""
        return terminology_engine(self.resources.db)
