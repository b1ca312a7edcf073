"""Importing this module registers every operation the server implements."""

from fhir_server.operations import everything, meta, mpi_match, mpi_merge, mpi_review, national, terminology_ops, validate, versions  # noqa: F401

# isort: split
# registered last: the registration order is the order the CapabilityStatement lists them in
from fhir_server.bulk import operation as _bulk_export  # noqa: F401  (registers $export)
