"""Importing this module registers every operation the server implements."""

from fhir_server.operations import everything, meta, validate  # noqa: F401
