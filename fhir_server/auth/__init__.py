"""Authentication and authorisation: SMART scopes, registered clients, the token endpoint,
signed access tokens and SMART discovery (see docs/security.md)."""
