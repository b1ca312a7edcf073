"""AuditEvent read and search, served from the audit table (not the resource store)."""

from __future__ import annotations

from contextlib import nullcontext
from urllib.parse import urlencode

from sqlalchemy import Connection

from fhir_server import jsonio
from fhir_server.audit.search import read_audit, search_audit
from fhir_server.errors import FhirError
from fhir_server.search.compartment import Compartment, members
from fhir_server.search.parse import drop_empty
from fhir_server.service import bundles
from fhir_server.storage.db import Database


def _compartment_criterion(compartment: Compartment) -> tuple[str, str]:
    """The trail's own criterion for AuditEvents in ``compartment``: in the Patient compartment
    the CompartmentDefinition's parameter is ``patient``, which the trail searches as defined.
    The Device and Practitioner compartments name ``agent``, whose R4 meaning (who took part) the
    trail's ``agent`` (the acting client's Organization) does not have: refused, not answered wrong."""
    members(compartment, ["AuditEvent"])  # 400 outside the compartments that hold AuditEvents
    if compartment.code != "Patient":
        raise FhirError.of(
            400,
            "not-supported",
            f"AuditEvents are searched in the Patient compartment only, not in {compartment.code}'s: "
            "search AuditEvent?agent=... for the events of a client's Organization",
        )
    return ("patient", compartment.path)


class AuditTrail:
    def __init__(self, db: Database, default_count: int, max_count: int) -> None:
        self.db = db
        self.default_count = default_count
        self.max_count = max_count

    def read(self, event_id: str, *, source: Connection | None = None) -> bytes:
        """``source``: the connection to read in (a transaction's own), else a read."""
        with self.db.read() if source is None else nullcontext(source) as conn:
            event = read_audit(conn, event_id)
        if event is None:
            raise FhirError.of(404, "not-found", f"AuditEvent/{event_id} is not known")
        return jsonio.dumps(event)

    def search(
        self,
        base: str,
        params: list[tuple[str, str]],
        *,
        strict: bool = False,
        source: Connection | None = None,
        compartment: Compartment | None = None,
    ) -> bytes:
        """A searchset Bundle; a parameter of empty value is left out (400 if ``strict``), as in
        every search (``search.parse.drop_empty``). ``compartment``: ``Patient/1/AuditEvent``."""
        params = drop_empty(params, strict=strict, what="AuditEvent search parameter")
        if compartment is not None:
            params = [*params, _compartment_criterion(compartment)]
        with self.db.read() if source is None else nullcontext(source) as conn:
            events, next_params = search_audit(conn, params, default_count=self.default_count, max_count=self.max_count)
        url = f"{base}/AuditEvent"
        links = [("self", url + ("?" + urlencode(params) if params else ""))]
        if next_params is not None:
            links.append(("next", url + "?" + urlencode(next_params)))
        entries = [bundles.entry(f"{url}/{e['id']}", jsonio.dumps(e), search={"mode": "match"}) for e in events]
        return bundles.bundle("searchset", entries, links=links)
