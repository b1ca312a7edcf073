"""SATUSEHAT sync: the server forwards a facility's visits to SATUSEHAT (docs/satusehat.md)."""
