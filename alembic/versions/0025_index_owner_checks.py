"""PostgreSQL: the index rows' owners checked once per statement instead of once per row.

Every search-index row points at its resource (``resource_pk`` -> ``resources.pk``). As a
foreign key, PostgreSQL checked that with a query of its own for each row, locking the
``resources`` row ``FOR KEY SHARE``: a write copies ~13 index rows per resource, and in
``fhir-server import`` of the Synthea sample those checks were ~20 % of PostgreSQL's CPU
(``perf``: ``AfterTriggerEndQuery``, ``SPI_execute_snapshot``). COPYing 28,668 ``idx_token``
rows took ~105 ms without a check, ~200-285 ms with the foreign key and ~130 ms with one
statement-level check over the rows the statement wrote (a transition table, an anti-join on
the primary key).

The guarantees stay: a row whose resource does not exist is refused at the end of the
statement that wrote it (SQLSTATE 23503, as the foreign key did), and deleting a ``resources``
row deletes its index rows (the cascade, also once per statement). What the per-row lock added
is not needed here: only the transaction that writes a resource writes its index rows, holding
that row (a new row, or ``SELECT ... FOR UPDATE``), and the server deletes no ``resources`` row
but its own unused claims. SQLite keeps its foreign keys (their check is a B-tree look-up in
the writer's own process).

Revision ID: 0025_index_owner_checks
Revises: 0024_lz4_bodies
"""

from alembic import op

revision = "0025_index_owner_checks"
down_revision = "0024_lz4_bodies"
branch_labels = None
depends_on = None

#: the tables of one row per indexed value (search/extract.py, mpi/blocking.py)
TABLES = (
    "idx_token",
    "idx_string",
    "idx_date",
    "idx_reference",
    "idx_number",
    "idx_quantity",
    "idx_uri",
    "idx_composite",
    "idx_mpi",
)

# the search_path of the migration is kept by the functions: they name the server's tables
_OWNERS_CHECK = """
CREATE FUNCTION fhir_index_rows_have_owners() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
  IF EXISTS (SELECT FROM fhir_new_rows n WHERE NOT EXISTS (SELECT FROM resources r WHERE r.pk = n.resource_pk)) THEN
    RAISE EXCEPTION 'insert or update on table "%" violates its owner check', TG_TABLE_NAME
      USING ERRCODE = 'foreign_key_violation', DETAIL = 'resource_pk is not present in table "resources".';
  END IF;
  RETURN NULL;
END $$
"""
_CASCADE = """
CREATE FUNCTION fhir_delete_index_rows() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
{deletes}
  RETURN NULL;
END $$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(_OWNERS_CHECK)
    deletes = "\n".join(f"  DELETE FROM {t} WHERE resource_pk IN (SELECT pk FROM fhir_gone_rows);" for t in TABLES)
    op.execute(_CASCADE.format(deletes=deletes))
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} DROP CONSTRAINT fk_{table}_resource_pk_resources")
        for event in ("INSERT", "UPDATE"):
            op.execute(
                f"CREATE TRIGGER {table}_owner_{event.lower()} AFTER {event} ON {table} "
                "REFERENCING NEW TABLE AS fhir_new_rows FOR EACH STATEMENT EXECUTE FUNCTION fhir_index_rows_have_owners()"
            )
    op.execute(
        "CREATE TRIGGER resources_delete_index_rows AFTER DELETE ON resources "
        "REFERENCING OLD TABLE AS fhir_gone_rows FOR EACH STATEMENT EXECUTE FUNCTION fhir_delete_index_rows()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER resources_delete_index_rows ON resources")
    for table in TABLES:
        for event in ("insert", "update"):
            op.execute(f"DROP TRIGGER {table}_owner_{event} ON {table}")
        op.execute(
            f"ALTER TABLE {table} ADD CONSTRAINT fk_{table}_resource_pk_resources "
            "FOREIGN KEY (resource_pk) REFERENCES resources (pk) ON DELETE CASCADE"
        )
    op.execute("DROP FUNCTION fhir_delete_index_rows()")
    op.execute("DROP FUNCTION fhir_index_rows_have_owners()")
