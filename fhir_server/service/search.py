"""Search at type and system level: run the engine, build the searchset Bundle."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection

from fhir_server import jsonio
from fhir_server.errors import FhirError, operation_outcome
from fhir_server.search.compartment import Compartment, CompartmentPage, Member
from fhir_server.search.engine import SearchResult, compartment_members, run_search
from fhir_server.service import bundles
from fhir_server.service.access import OPEN, Principal
from fhir_server.storage.db import Database
from fhir_server.storage.index_queries import meta_summary
from fhir_server.urlcodec import quote_plus


class SearchService:
    def __init__(self, db: Database, default_count: int, max_count: int) -> None:
        self.db = db
        self.default_count = default_count
        self.max_count = max_count

    def run(
        self,
        base: str,
        res_type: str | None,
        params: list[tuple[str, str]],
        *,
        strict: bool,
        principal: Principal = OPEN,
        source: Database | Connection | None = None,
        compartment: Compartment | None = None,
    ) -> SearchResult:
        """The search's result, limited to what ``principal`` may see: chains and ``_has`` only into
        types it may search, includes (and ``:iterate`` steps) only of types it may read.
        ``compartment``: a compartment search (``Patient/1/Encounter``, ``Patient/1/*``)."""
        if res_type is None:
            _refuse_audit_events(params)
        restricted = principal.restricted
        return run_search(
            source or self.db,
            res_type,
            params,
            strict=strict,
            default_count=self.default_count,
            max_count=self.max_count,
            base_url=base,
            searchable=principal.searchable if restricted else None,
            readable=principal.readable if restricted else None,
            compartment=compartment,
        )

    def search(
        self,
        base: str,
        res_type: str | None,
        params: list[tuple[str, str]],
        *,
        strict: bool,
        principal: Principal = OPEN,
        source: Database | Connection | None = None,
        compartment: Compartment | None = None,
    ) -> bytes:
        """A searchset Bundle of what ``principal`` may see: chains and ``_has`` only into types it
        may search (403 otherwise), included resources of types it may not read left out, and in a
        system search its matches too. ``source``: an open connection (inside a transaction);
        ``compartment``: a compartment search (its links name the compartment)."""
        result = self.run(base, res_type, params, strict=strict, principal=principal, source=source, compartment=compartment)
        if principal.restricted and res_type is None:  # system search: matches of types the caller may not read are left out too
            result.matches = [m for m in result.matches if principal.readable(m[0])]
        return searchset(base, res_type, result, compartment)

    def compartment_rows(self, page: CompartmentPage) -> list[Member]:
        """A keyset page of a compartment's members (``$everything``)."""
        return compartment_members(self.db, page)

    def meta_summary(self, res_type: str | None) -> dict[str, list[Any]]:
        """The profiles, tags and security labels in use (``$meta`` at system and type level)."""
        with self.db.read() as conn:
            return meta_summary(conn, res_type)


def _refuse_audit_events(params: list[tuple[str, str]]) -> None:
    """400 for ``_type=AuditEvent`` in a search over several types: AuditEvents live in the audit
    trail (service/audit_trail.py), not among the stored resources such a search reads, so it
    would answer "none" while there are many."""
    if any(t.strip() == "AuditEvent" for name, value in params if name == "_type" for t in value.split(",")):
        raise FhirError.of(
            400,
            "not-supported",
            "AuditEvents are searched on their own: [base]/AuditEvent?..., or Patient/[id]/AuditEvent; not with other types",
        )


def searchset(base: str, res_type: str | None, result: SearchResult, compartment: Compartment | None = None) -> bytes:
    url = _search_url(base, res_type, compartment)
    encoded: dict[tuple[str, str], str] = {}  # the links share most of their parameters

    def link(params: list[tuple[str, str]]) -> str:
        parts = []
        for pair in params:
            part = encoded.get(pair)
            if part is None:
                part = encoded[pair] = quote_plus(pair[0]) + "=" + quote_plus(pair[1])
            parts.append(part)
        return url + ("?" + "&".join(parts) if parts else "")

    links = [("self", link(result.self_params))]
    for relation, params in (("first", result.first_params), ("previous", result.prev_params), ("next", result.next_params)):
        if params is not None:
            links.append((relation, link(params)))
    extensions = result.match_extensions
    entries = [
        bundles.entry(
            f"{base}/{t}/{i}",
            body,
            search={"extension": extensions[(t, i)], "mode": "match"} if (t, i) in extensions else {"mode": "match"},
        )
        for t, i, body in result.matches
    ]
    entries += [bundles.entry(f"{base}/{t}/{i}", body, search={"mode": "include"}) for t, i, body in result.includes]
    if result.issues:
        outcome = jsonio.dumps(operation_outcome(result.issues))
        entries.append(bundles.entry(None, outcome, search={"mode": "outcome"}))
    return bundles.bundle("searchset", entries, total=result.total, links=links)


def _search_url(base: str, res_type: str | None, compartment: Compartment | None) -> str:
    """The URL a search was sent to, without its query: ``[base]/Patient``, ``[base]``,
    ``[base]/Patient/1/Encounter``, ``[base]/Patient/1/*``."""
    if compartment is not None:
        return f"{base}/{compartment.path}/{res_type or '*'}"
    return f"{base}/{res_type}" if res_type else base
