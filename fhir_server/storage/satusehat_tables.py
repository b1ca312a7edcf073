"""Tables of the SATUSEHAT sync (``fhir_server.satusehat``, docs/satusehat.md).

``satusehat_items``: one row per local resource the sync has seen (Encounter, Condition,
Observation, Procedure, Location): its status, its SATUSEHAT id once known and the last attempt.
The work itself is claimed through ``work_partitions`` (queue ``satusehat``, ``storage/claims.py``);
the change-log position is the ``change_cursors`` row ``satusehat``.
``satusehat_ids``: the NIK -> IHS number cache of Patients and Practitioners (misses included,
for the negative-cache period). ``satusehat_facilities``: facilities added by the CLI (several
Puskesmas on one server); the facility configured by environment is not stored.
Registered on the shared ``metadata``; created by migration ``0016_satusehat``.
"""

from __future__ import annotations

import sqlalchemy as sa

from .tables import metadata

satusehat_items = sa.Table(
    "satusehat_items",
    metadata,
    sa.Column("res_type", sa.String(64), primary_key=True),
    sa.Column("res_id", sa.String(64), primary_key=True),
    # the facility's name ("default": the one configured by environment)
    sa.Column("facility", sa.String(64), nullable=False),
    # the work_partitions partition that carries it (one patient of one facility, or the resource)
    sa.Column("partition", sa.String(128), nullable=False),
    # pending | waiting | synced | failed | held | not-applicable
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("satusehat_id", sa.String(64), nullable=True),
    # the newest local version seen, and the one SATUSEHAT has
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("synced_version", sa.Integer, nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_attempt_us", sa.BigInteger, nullable=True),
    # why it failed, is held or waits (text for people); the rule numbers and OperationOutcome of SATUSEHAT
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("rule", sa.String(64), nullable=True),
    sa.Column("outcome", sa.Text, nullable=True),
    # the local reference ("Encounter/x") a waiting item waits for
    sa.Column("waits_for", sa.String(140), nullable=True),
    # a create may have reached SATUSEHAT without its answer reaching us: look it up before sending again
    sa.Column("in_doubt", sa.Boolean, nullable=False, server_default=sa.false()),
    # since when it waits to be sent (the oldest pending item of the status overview)
    sa.Column("queued_us", sa.BigInteger, nullable=False),
    sa.Column("updated_us", sa.BigInteger, nullable=False),
    sa.Index(None, "partition", "status"),
    sa.Index(None, "status", "facility"),
    sa.Index(None, "waits_for"),
)

satusehat_ids = sa.Table(
    "satusehat_ids",
    metadata,
    # Patient | Practitioner
    sa.Column("kind", sa.String(16), primary_key=True),
    sa.Column("nik", sa.String(32), primary_key=True),
    # NULL: SATUSEHAT did not know the NIK when asked (a miss, trusted for the negative-cache period)
    sa.Column("ihs", sa.String(64), nullable=True),
    sa.Column("checked_us", sa.BigInteger, nullable=False),
)

satusehat_facilities = sa.Table(
    "satusehat_facilities",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    # the local Organization whose resources (serviceProvider / managingOrganization) go to this facility
    sa.Column("local_org", sa.String(64), nullable=False, unique=True),
    sa.Column("organization_id", sa.String(64), nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("client_id", sa.String(256), nullable=False),
    # never printed or logged (docs/satusehat.md)
    sa.Column("client_secret", sa.Text, nullable=False),
    sa.Column("created_us", sa.BigInteger, nullable=False),
)
