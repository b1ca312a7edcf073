"""Typed search-index tables (one row per extracted value), on the shared ``metadata``.

Every row points at ``resources.pk`` (ON DELETE CASCADE) and names its search
parameter code in ``param``. Queries select matching ``resource_pk`` values
with ``pk IN (SELECT resource_pk FROM idx_x WHERE param = ? AND ...)``, so
each table's B-tree index starts with ``param`` followed by the column the
hot predicate compares. See docs/search.md.

Strings that are compared by range or ``LIKE`` use the ``C`` collation on
PostgreSQL so ordering is bytewise, exactly like SQLite's BINARY collation;
the same SQL then gives the same answers on both engines.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from .tables import metadata

# bytewise ordering on both engines (prefix range scans, _sort)
CText = sa.Text().with_variant(postgresql.TEXT(collation="C"), "postgresql")
PkRef = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _fk() -> sa.Column:
    return sa.Column(
        "resource_pk",
        PkRef,
        sa.ForeignKey("resources.pk", ondelete="CASCADE", name=None),
        nullable=False,
    )


def _param() -> sa.Column:
    return sa.Column("param", sa.String(64), nullable=False)


idx_token = sa.Table(
    "idx_token",
    metadata,
    _fk(),
    _param(),
    sa.Column("system", CText, nullable=True),
    sa.Column("code", CText, nullable=True),
    # normalised display / text (CodeableConcept.text, Coding.display, Identifier.type.text) for :text
    sa.Column("text", sa.Text, nullable=True),
    sa.Index("ix_idx_token_param_code_system", "param", "code", "system", "resource_pk"),
    sa.Index(
        "ix_idx_token_resource_pk", "resource_pk", "param", "code", "system"
    ),  # values: walks in key order check criteria in the index (0018)
)

idx_string = sa.Table(
    "idx_string",
    metadata,
    _fk(),
    _param(),
    # lower-case, accents stripped, whitespace collapsed: default (prefix) and :contains
    sa.Column("value", CText, nullable=False),
    # as written in the resource: :exact
    sa.Column("exact", sa.Text, nullable=False),
    sa.Index("ix_idx_string_param_value", "param", "value", "resource_pk"),
    sa.Index("ix_idx_string_resource_pk", "resource_pk", "param", "value"),  # values: walks in key order check criteria in the index (0018)
)

idx_date = sa.Table(
    "idx_date",
    metadata,
    _fk(),
    _param(),
    # inclusive range in microseconds since the epoch (UTC)
    sa.Column("lo", sa.BigInteger, nullable=False),
    sa.Column("hi", sa.BigInteger, nullable=False),
    sa.Index("ix_idx_date_param_lo", "param", "lo", "hi", "resource_pk"),
    sa.Index("ix_idx_date_param_hi", "param", "hi", "lo", "resource_pk"),
    sa.Index(
        "ix_idx_date_resource_pk", "resource_pk", "param", "lo", "hi"
    ),  # values: walks in key order check criteria in the index (0018)
)
# the widest stored value per parameter: bounds the lo side of ge/gt searches (search/sql.py _span)
sa.Index("ix_idx_date_param_span", idx_date.c.param, idx_date.c.hi - idx_date.c.lo)

#: the reference index's pseudo-parameter for references no search parameter covers (inside
#: extensions, contained resources, elements without a search parameter): not searchable, but
#: "who points at Patient/x" (``$merge``) must find them. Not a valid search parameter code, so no
#: search sees it; ``_include=*`` / ``_revinclude=*`` leave it out.
OTHER_REFERENCE = "-other"

_HAS_URL = sa.text("url IS NOT NULL")
_HAS_IDENTIFIER = sa.text("id_value IS NOT NULL")

idx_reference = sa.Table(
    "idx_reference",
    metadata,
    _fk(),
    _param(),
    # local references (Type/id, or absolute URLs under our own base): type + id (+ version)
    sa.Column("target_type", sa.String(64), nullable=True),
    sa.Column("target_id", CText, nullable=True),
    sa.Column("target_version", sa.String(64), nullable=True),
    # other absolute references (and canonicals), as written
    sa.Column("url", CText, nullable=True),
    # Reference.identifier, for :identifier
    sa.Column("id_system", CText, nullable=True),
    sa.Column("id_value", CText, nullable=True),
    sa.Index("ix_idx_reference_param_target", "param", "target_id", "target_type", "resource_pk"),
    sa.Index("ix_idx_reference_target", "target_type", "target_id"),
    # only the rows that have one (alembic 0023): a search asks ``url = ?`` / ``id_value = ?``
    sa.Index("ix_idx_reference_param_url", "param", "url", sqlite_where=_HAS_URL, postgresql_where=_HAS_URL),
    sa.Index(
        "ix_idx_reference_param_identifier",
        "param",
        "id_value",
        "id_system",
        sqlite_where=_HAS_IDENTIFIER,
        postgresql_where=_HAS_IDENTIFIER,
    ),
    sa.Index("ix_idx_reference_resource_pk", "resource_pk", "param"),
)

idx_number = sa.Table(
    "idx_number",
    metadata,
    _fk(),
    _param(),
    sa.Column("value", sa.Float, nullable=False),
    # implicit precision range of the stored value (1.5 -> [1.45, 1.55])
    sa.Column("lo", sa.Float, nullable=False),
    sa.Column("hi", sa.Float, nullable=False),
    sa.Index("ix_idx_number_param_value", "param", "value"),
    sa.Index("ix_idx_number_resource_pk", "resource_pk", "param"),
)

idx_quantity = sa.Table(
    "idx_quantity",
    metadata,
    _fk(),
    _param(),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("lo", sa.Float, nullable=False),
    sa.Column("hi", sa.Float, nullable=False),
    sa.Column("system", CText, nullable=True),
    sa.Column("code", CText, nullable=True),
    sa.Column("unit", sa.Text, nullable=True),
    sa.Index("ix_idx_quantity_param_value", "param", "value"),
    sa.Index("ix_idx_quantity_resource_pk", "resource_pk", "param"),
)

idx_uri = sa.Table(
    "idx_uri",
    metadata,
    _fk(),
    _param(),
    sa.Column("value", CText, nullable=False),
    sa.Index("ix_idx_uri_param_value", "param", "value"),
    sa.Index("ix_idx_uri_resource_pk", "resource_pk", "param"),
)

# Composite parameters (two components, the first a token): one row per element
# instance (e.g. per Observation.component), so both components come from the same
# element. The second component lands in the columns of its type.
idx_composite = sa.Table(
    "idx_composite",
    metadata,
    _fk(),
    _param(),
    sa.Column("c1_system", CText, nullable=True),
    sa.Column("c1_code", CText, nullable=True),
    sa.Column("c2_system", CText, nullable=True),  # token system / quantity system
    sa.Column("c2_code", CText, nullable=True),  # token code / quantity code
    sa.Column("c2_value", sa.Float, nullable=True),  # quantity / number
    sa.Column("c2_lo", sa.BigInteger, nullable=True),  # date range
    sa.Column("c2_hi", sa.BigInteger, nullable=True),
    sa.Column("c2_text", CText, nullable=True),  # normalised string
    sa.Index("ix_idx_composite_param_c1", "param", "c1_code", "c1_system"),
    sa.Index("ix_idx_composite_resource_pk", "resource_pk", "param"),
)

# Master patient index blocking keys (fhir_server/mpi/blocking.py): one row per key of a Patient,
# written with its other index rows, so every write path keeps them current (docs/mpi.md).
# Candidates for $match and the duplicate scan are the rows sharing a key.
idx_mpi = sa.Table(
    "idx_mpi",
    metadata,
    _fk(),
    sa.Column("key", CText, nullable=False),
    sa.Index("ix_idx_mpi_key", "key", "resource_pk"),
    sa.Index("ix_idx_mpi_resource_pk", "resource_pk"),
)

INDEX_TABLES: dict[str, sa.Table] = {
    "token": idx_token,
    "string": idx_string,
    "date": idx_date,
    "reference": idx_reference,
    "number": idx_number,
    "quantity": idx_quantity,
    "uri": idx_uri,
    "composite": idx_composite,
    "mpi": idx_mpi,
}
