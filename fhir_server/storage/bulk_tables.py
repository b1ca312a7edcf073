"""The Bulk Data ``$export`` job table (``fhir_server.bulk``).

One row per export job. Jobs live in the database so that any server process
can answer status polls and any worker can run them: a worker claims a job by
a compare-and-set UPDATE and holds it with a lease it renews while it runs; a
job whose lease ran out (its worker died) is claimed again and re-run from
scratch. Registered on the shared ``metadata``; created by migration ``0006_bulk``
(kick-off option columns: ``0012_export_job_options``, ``0019_export_filters``).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.sql.elements import conv

from .tables import metadata

STATUSES = ("queued", "running", "complete", "error", "cancelled")
LEVELS = ("system", "patient", "group")

export_jobs = sa.Table(
    "export_jobs",
    metadata,
    # a uuid4 (the id in $export-status/{id})
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("level", sa.String(16), nullable=False),
    # the Group id of a Group-level export
    sa.Column("group_id", sa.String(64), nullable=True),
    # comma-separated resource types to export; NULL = every type (system) / the compartment types
    sa.Column("types", sa.Text, nullable=True),
    # _since, microseconds since the epoch (UTC)
    sa.Column("since_us", sa.BigInteger, nullable=True),
    sa.Column("output_format", sa.String(64), nullable=False),
    # the kick-off request URL (the manifest's "request")
    sa.Column("request_url", sa.Text, nullable=False),
    # the OAuth2 client that asked ("anonymous" when auth is off): only it may poll and download
    sa.Column("client_id", sa.String(128), nullable=False),
    sa.Column("created_us", sa.BigInteger, nullable=False),
    sa.Column("updated_us", sa.BigInteger, nullable=False),
    # the manifest's transactionTime: when the running attempt started
    sa.Column("transaction_time_us", sa.BigInteger, nullable=True),
    # the X-Progress text
    sa.Column("progress", sa.String(256), nullable=True),
    # the worker holding the job and until when (microseconds); renewed while it runs
    sa.Column("lease_owner", sa.String(128), nullable=True),
    sa.Column("lease_until_us", sa.BigInteger, nullable=True),
    # how many times a worker claimed the job (a job that keeps killing workers is given up)
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    # JSON: {"output": [{"type", "count"}]} once complete (URLs are built per request)
    sa.Column("manifest", sa.Text, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    # kick-off options (migration 0011): the ``patient`` parameter's ids (JSON array; NULL = every
    # patient of the level), the supported ``includeAssociatedData`` values (comma-separated), and
    # the issues of the parameters a lenient kick-off ignored (JSON array of OperationOutcome.issue),
    # written into the manifest's error file
    sa.Column("patient_ids", sa.Text, nullable=True),
    sa.Column("associated_data", sa.Text, nullable=True),
    sa.Column("kickoff_issues", sa.Text, nullable=True),
    # kick-off filters (migration 0018): ``_typeFilter`` as JSON {type: [search query, ...]} (the
    # queries of one type are OR-ed) and ``_elements`` (comma-separated, ``Type.element`` or ``element``)
    sa.Column("type_filters", sa.Text, nullable=True),
    sa.Column("elements", sa.Text, nullable=True),
    sa.CheckConstraint(f"status IN {STATUSES!r}", name=conv("ck_export_jobs_status")),
    sa.CheckConstraint(f"level IN {LEVELS!r}", name=conv("ck_export_jobs_level")),
    # the claim query: queued jobs and running jobs whose lease ran out, oldest first
    sa.Index("ix_export_jobs_status_lease_until_us", "status", "lease_until_us"),
    sa.Index("ix_export_jobs_client_id_created_us", "client_id", "created_us"),
)
