"""Dukcapil and BPJS (VClaim, P-Care) <-> FHIR R4 mappings, as pure functions over plain JSON.

See docs/mappings.md for the field-by-field tables and the decisions where SATUSEHAT is silent.
"""
