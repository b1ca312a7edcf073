"""The audit trail: every interaction recorded as a row of ``audit_events``,
served as FHIR R4 AuditEvents (see docs/audit.md).

- :mod:`.events`: :class:`AuditRecord`, its row and its AuditEvent form (:func:`to_fhir`)
- :mod:`.request_rows`: the row of an HTTP request queued by the middleware (raw values)
- :mod:`.recorder`: :class:`AuditRecorder` (buffered, for reads and failures) and
  :func:`record_in` (in the write's own transaction)
- :mod:`.bulk_insert`: the batch INSERT of each database (multi-row on SQLite, COPY on PostgreSQL)
- :mod:`.ids`: AuditEvent ids (UUID v7; derived from the row for the server's own events)
- :mod:`.search`: ``search_audit``, ``read_audit``, ``capability_search_params``, ``purge``
"""

from .events import AuditRecord, to_fhir
from .recorder import AuditRecorder, NullRecorder, record_in
from .search import capability_search_params, purge, read_audit, search_audit

__all__ = [
    "AuditRecord",
    "AuditRecorder",
    "NullRecorder",
    "capability_search_params",
    "purge",
    "read_audit",
    "record_in",
    "search_audit",
    "to_fhir",
]
