"""FHIR operations ($name): one registry feeds the routes and the CapabilityStatement."""
