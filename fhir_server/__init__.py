"""FHIR R4 interoperability server for Indonesian healthcare."""

__version__ = "0.1.0"
