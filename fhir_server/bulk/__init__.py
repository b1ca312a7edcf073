"""FHIR Bulk Data Access 2.0 ``$export`` (system, Patient and Group level).

``jobs`` keeps export jobs in the database (claim with a lease, heartbeat,
finish, cancel); ``exporter`` runs one job into NDJSON files; ``worker`` is the
background thread of each server process that claims and runs jobs;
``routes`` is the HTTP side (kick-off, status, cancel, file download).
See docs/bulk.md.
"""
