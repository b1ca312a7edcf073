"""The audit trail table: one row per audited interaction.

Audit events are not stored as FHIR resources: indexing a resource for search
costs hundreds of microseconds, and an event is recorded on every read. The
typed columns below are what the AuditEvent search filters on; the FHIR
AuditEvent is built from a row when it is read (``fhir_server.audit.events``).
Registered on the shared ``metadata``; created by migration ``0005_audit``,
``event_id`` made optional by ``0008_audit_derived_ids``, the client index made
partial by ``0009_audit_client_index_partial``.
"""

from __future__ import annotations

import sqlalchemy as sa

from .tables import BigPk, metadata

#: column lengths; longer values are cut when the row is built (never rejected)
QUERY_MAX = 2048
USER_AGENT_MAX = 256
ADDRESS_MAX = 64
REQUEST_ID_MAX = 64

audit_events = sa.Table(
    "audit_events",
    metadata,
    sa.Column("pk", BigPk, primary_key=True, autoincrement=True),
    # the AuditEvent.id when it was given explicitly (or recorded before 0008);
    # NULL for the server's own events, whose id is derived from pk and
    # recorded_us when read (fhir_server.audit.ids): no id to generate, no index entry
    sa.Column("event_id", sa.String(64), nullable=True),
    # AuditEvent.recorded: microseconds since the epoch, UTC
    sa.Column("recorded_us", sa.BigInteger, nullable=False),
    # http://hl7.org/fhir/restful-interaction code: read, vread, search-type, ...
    sa.Column("interaction", sa.String(32), nullable=False),
    # http://hl7.org/fhir/audit-event-action: C R U D E
    sa.Column("action", sa.String(1), nullable=False),
    sa.Column("res_type", sa.String(64), nullable=True),
    sa.Column("res_id", sa.String(64), nullable=True),
    # the search or operation query string (without _format/_pretty), cut to QUERY_MAX
    sa.Column("query", sa.Text, nullable=True),
    # the operation name with its $, e.g. "$validate"
    sa.Column("operation", sa.String(64), nullable=True),
    # the HTTP status of the response; AuditEvent.outcome is derived from it
    sa.Column("status", sa.Integer, nullable=False),
    # the OAuth2 client ("anonymous" when auth is off) and the Organization it acts for
    sa.Column("client_id", sa.String(128), nullable=True),
    sa.Column("organization_id", sa.String(64), nullable=True),
    sa.Column("address", sa.String(ADDRESS_MAX), nullable=True),
    sa.Column("user_agent", sa.String(USER_AGENT_MAX), nullable=True),
    sa.Column("request_id", sa.String(REQUEST_ID_MAX), nullable=True),
    # partial: the NULL ids of the server's own events take no index insertion
    sa.Index(
        "ux_audit_events_event_id",
        "event_id",
        unique=True,
        sqlite_where=sa.text("event_id IS NOT NULL"),
        postgresql_where=sa.text("event_id IS NOT NULL"),
    ),
    # newest-first listing, date ranges and keyset paging (appends at the right edge)
    sa.Index(None, "recorded_us", "pk"),
    # agent:identifier=client (a handful of clients: a few hot insertion points);
    # partial: anonymous events (auth off) take no insertion here, ~25 % of their INSERT
    sa.Index(
        None,
        "client_id",
        "recorded_us",
        "pk",
        sqlite_where=sa.text("client_id IS NOT NULL"),
        postgresql_where=sa.text("client_id IS NOT NULL"),
    ),
    # Deliberately no index on (res_type, res_id): reads hit patients at random,
    # so such an index takes one random B-tree insertion per event - measured
    # +14 µs of CPU per event on SQLite and +5 µs of server CPU on PostgreSQL,
    # more than the whole budget of recording. entity/patient searches walk the
    # recorded_us index instead (newest first); narrow them with date=.
)
