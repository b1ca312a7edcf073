"""SQLAlchemy Core tables shared by SQLite and PostgreSQL.

``resources`` holds the current version of every resource (its ``pk`` is what
search-index rows point at); ``resource_versions`` holds every version ever
written, deleted ones as tombstones. Bodies are the exact JSON bytes that were
validated and stored: reads, vreads, searches and history are served from
them without re-serialising. On PostgreSQL a generated JSONB column mirrors
the body for ad-hoc SQL and analytics (see the initial migration).
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    }
)

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL wants BIGINT.
BigPk = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

resources = sa.Table(
    "resources",
    metadata,
    sa.Column("pk", BigPk, primary_key=True, autoincrement=True),
    sa.Column("res_type", sa.String(64), nullable=False),
    sa.Column("res_id", sa.String(64), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    # microseconds since the Unix epoch, UTC: sortable and comparable on both engines
    sa.Column("updated_us", sa.BigInteger, nullable=False),
    sa.Column("deleted", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("body", sa.LargeBinary, nullable=True),
    sa.UniqueConstraint("res_type", "res_id"),
    sa.Index(None, "res_type", "updated_us"),
)
# PostgreSQL: a type's current keys in key order, for searches that walk them (0021_type_key_index)
sa.Index("ix_resources_res_type_pk", resources.c.res_type, resources.c.pk, postgresql_where=sa.text("NOT deleted")).ddl_if(
    dialect="postgresql"
)

resource_versions = sa.Table(
    "resource_versions",
    metadata,
    sa.Column("pk", BigPk, primary_key=True, autoincrement=True),
    sa.Column("res_type", sa.String(64), nullable=False),
    sa.Column("res_id", sa.String(64), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated_us", sa.BigInteger, nullable=False),
    # POST, PUT, PATCH or DELETE: the history Bundle's entry.request.method
    sa.Column("method", sa.String(8), nullable=False),
    sa.Column("deleted", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("body", sa.LargeBinary, nullable=True),
    sa.UniqueConstraint("res_type", "res_id", "version"),
    sa.Index(None, "updated_us"),
    sa.Index(None, "res_type", "updated_us"),
)

# The race guard of conditional create (HAPI's HFJ_RES_SEARCH_URL): one row per
# normalised "Type?query" that created a resource. Two clients creating with the
# same condition at the same time collide on the primary key in the database,
# so the loser re-runs its search and finds the winner's resource.
conditional_keys = sa.Table(
    "conditional_keys",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("res_type", sa.String(64), nullable=False),
    sa.Column("resource_pk", sa.BigInteger, sa.ForeignKey("resources.pk", ondelete="CASCADE"), nullable=True),
)

# The change log: one row per committed create, update and delete, written in the write's
# own transaction (storage/changelog.py). ``seq`` is the commit order on both engines:
# SQLite has one writer at a time; on PostgreSQL the rows are inserted at the very end of
# the transaction under a transaction-scoped advisory lock, so no transaction can take a
# later ``seq`` and commit before an earlier one. Consumers (subscriptions, SATUSEHAT sync)
# keep their own position and read ``seq > position`` in order.
change_log = sa.Table(
    "change_log",
    metadata,
    sa.Column("seq", BigPk, primary_key=True, autoincrement=True),
    sa.Column("res_type", sa.String(64), nullable=False),
    sa.Column("res_id", sa.String(64), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    # create | update | delete
    sa.Column("action", sa.String(8), nullable=False),
    # the OAuth client that wrote it; NULL: anonymous (auth off) or the server itself
    sa.Column("client_id", sa.String(64), nullable=True),
    sa.Column("recorded_us", sa.BigInteger, nullable=False),
    sa.Index(None, "recorded_us"),
    # AUTOINCREMENT: a purge that empties the table must not let SQLite reuse old numbers
    sqlite_autoincrement=True,
)
