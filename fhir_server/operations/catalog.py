"""Importing this module registers every operation the server implements."""

from fhir_server.operations import everything, meta, national, validate  # noqa: F401
