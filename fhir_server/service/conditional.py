"""Conditional create, update, delete and the matching they share (http.html#cond-update).

Race safety lives in the database: a conditional create takes a guard row keyed
by the normalised condition (``conditional_keys``) before it inserts. Two
clients racing with the same condition collide on that key; the loser (on
PostgreSQL it waits for the winner's commit) searches again and finds the
winner's resource instead of creating a duplicate. On SQLite writers are
serialised, and the same code path handles stale guards.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from sqlalchemy.engine import Connection

from fhir_server import jsonio
from fhir_server.errors import FhirError
from fhir_server.search.engine import run_search
from fhir_server.search.extract import param_rows
from fhir_server.service.resolved_identifiers import ResolvedIdentifiers
from fhir_server.service.resources import Prepared, ResourceService
from fhir_server.service.results import WriteResult
from fhir_server.storage import repository as repo
from fhir_server.urlcodec import parse_qsl

#: (stored resource, incoming resource) -> the resource to store
Merge = Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]

_RESULT_PARAMS = frozenset(
    {"_count", "_sort", "_include", "_revinclude", "_summary", "_elements", "_total", "_format", "_pretty", "_cursor"}
)
_MAX_ATTEMPTS = 5


def parse_condition(query: str) -> list[tuple[str, str]]:
    """``identifier=a|b&active=true`` (or ``Patient?identifier=...``) as search parameters."""
    text = query.split("?", 1)[1] if "?" in query else query
    params = [(k, v) for k, v in parse_qsl(text) if k not in _RESULT_PARAMS]
    if not params:
        raise FhirError.of(400, "invalid", f"The condition '{query}' has no search parameters")
    return params


def create_condition(if_none_exist: str | None, query: str) -> str | None:
    """The condition of a create: the If-None-Exist header, or the search parameters of
    ``POST [type]?search`` (the request's or a Bundle entry's URL).

    FHIR names only the header; fhirpy's ``get_or_create`` (and Aidbox) put the condition in the
    URL. Ignoring it created a duplicate on every call, so it is the condition as the header would
    be. ``_format`` and ``_pretty`` are not search parameters, nor is ``_filename``: Medplum's
    client uploads a file as ``POST Binary?_filename=scan.pdf`` (R4 Binary has no element for the
    name; the client keeps it in the Attachment it builds). Both, differing: 400."""
    wanted = [(k, v) for k, v in parse_qsl(query) if k not in _NOT_CONDITIONS]
    header = if_none_exist or None
    if header and wanted and parse_qsl(header.rpartition("?")[2]) != wanted:
        raise FhirError.of(400, "invalid", "The create has two different conditions: If-None-Exist and search parameters in the URL")
    return header or (
        "&".join(part for part in query.split("&") if part and not part.startswith(_NOT_CONDITION_PREFIXES)) if wanted else None
    )


#: query parameters of a create that are no part of its condition (``create_condition``)
_NOT_CONDITIONS = ("_format", "_pretty", "_filename")
_NOT_CONDITION_PREFIXES = tuple(name + "=" for name in _NOT_CONDITIONS)


def condition_key(res_type: str, params: list[tuple[str, str]]) -> str:
    canonical = res_type + "?" + urlencode(sorted(params))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def find_matches(conn: Connection, res_type: str, params: list[tuple[str, str]], base: str | None) -> list[str]:
    """Ids of (at most two) current resources matching the condition; unknown params are an error."""
    result = run_search(conn, res_type, [*params, ("_count", "2")], strict=True, default_count=2, max_count=2, base_url=base)
    return [res_id for _, res_id, _ in result.matches]


#: identifier values short enough to be indexed whole (search.values.cut) and free of the
#: characters a search value escapes or splits on, so several can be asked in one search
_PLAIN_IDENTIFIER = re.compile(r"[^|,\\$\x00]{1,250}\|[^|,\\$\x00]{1,250}")


def _identifier_pair(condition: str) -> tuple[str, str] | None:
    """``(system, value)`` of a condition that is only ``identifier=system|value``, else None."""
    if not condition.startswith("identifier="):
        return None
    try:
        params = parse_condition(condition)
    except FhirError:
        return None
    if len(params) != 1 or params[0][0] != "identifier" or not _PLAIN_IDENTIFIER.fullmatch(params[0][1]):
        return None
    system, _, value = params[0][1].partition("|")
    return system, value


def _no_single_match(res_type: str, params: list[tuple[str, str]], matches: int) -> FhirError:
    what = "no resource" if not matches else "more than one resource"
    return FhirError.of(412, "conflict", f"The condition {res_type}?{urlencode(params)} matches {what}")


class ConditionalService:
    def __init__(self, resources: ResourceService, *, allow_multiple_delete: bool = False) -> None:
        self.resources = resources
        self.db = resources.db
        self.allow_multiple_delete = allow_multiple_delete
        self.resolved = ResolvedIdentifiers()

    # -- create (If-None-Exist) ----------------------------------------------
    def create_in(
        self,
        conn: Connection,
        res_type: str,
        resource: dict[str, Any],
        condition: str,
        base: str | None,
        res_id: str | None = None,
        *,
        prepared: Prepared | None = None,
    ) -> WriteResult:
        """``prepared``: ``ResourceService.prepare_create`` of ``resource``, done before the transaction."""
        params = parse_condition(condition)
        return self._create_guarded(
            conn,
            res_type,
            params,
            base,
            lambda: self.resources.create_in(conn, res_type, resource, res_id, prepared=prepared),
        )

    def _create_guarded(
        self,
        conn: Connection,
        res_type: str,
        params: list[tuple[str, str]],
        base: str | None,
        create: Callable[[], WriteResult],
        on_match: Callable[[str], WriteResult] | None = None,
    ) -> WriteResult:
        key = condition_key(res_type, params)
        for _ in range(_MAX_ATTEMPTS):
            matches = find_matches(conn, res_type, params, base)
            if len(matches) > 1:
                raise FhirError.of(412, "conflict", f"The condition {res_type}?{urlencode(params)} matches more than one resource")
            if matches:
                return on_match(matches[0]) if on_match else self._existing(conn, res_type, matches[0])
            if repo.claim_conditional_key(conn, key, res_type):
                result = create()
                if result.pk is not None:
                    repo.bind_conditional_key(conn, key, result.pk)
                return result
            # another transaction created with this condition: its resource is committed now
            if not find_matches(conn, res_type, params, base):
                repo.release_conditional_key(conn, key)  # a guard whose resource no longer matches
        raise FhirError.of(409, "conflict", "Conditional create kept colliding with other clients; retry")

    def _existing(self, conn: Connection, res_type: str, res_id: str) -> WriteResult:
        stored = self.resources.read_in(conn, res_type, res_id)
        return WriteResult(stored, 200)

    # -- update (PUT [type]?params) ------------------------------------------
    def update_in(
        self,
        conn: Connection,
        res_type: str,
        resource: dict[str, Any],
        condition: str,
        base: str | None,
        if_match: str | None = None,
        merge: Merge | None = None,
    ) -> WriteResult:
        """``merge(stored, incoming)``, when given, decides what an update of the match stores."""
        params = parse_condition(condition)
        body_id = resource.get("id") if isinstance(resource, dict) else None

        def update_match(match_id: str) -> WriteResult:
            if body_id is not None and body_id != match_id:
                raise FhirError.of(400, "invalid", f"The resource id {body_id!r} is not the id of the match ({match_id})", f"{res_type}.id")
            new = {**resource, "id": match_id}
            if merge is not None:
                stored = self.resources.read_in(conn, res_type, match_id, for_update=True)
                new = {**merge(jsonio.loads(stored.body or b"{}"), new), "id": match_id}
            return self.resources.update_in(conn, res_type, match_id, new, if_match)

        def create() -> WriteResult:
            if body_id is not None:
                return self.resources.update_in(conn, res_type, body_id, resource, if_match)
            return self.resources.create_in(conn, res_type, resource)

        return self._create_guarded(conn, res_type, params, base, create, on_match=update_match)

    # -- delete (DELETE [type]?params) ---------------------------------------
    def delete_in(self, conn: Connection, res_type: str, condition: str, base: str | None) -> list[WriteResult]:
        params = parse_condition(condition)
        if self.allow_multiple_delete:
            ids = [
                i for _, i, _ in run_search(conn, res_type, params, strict=True, default_count=1000, max_count=1000, base_url=base).matches
            ]
        else:
            ids = find_matches(conn, res_type, params, base)
            if len(ids) > 1:
                raise FhirError.of(412, "conflict", f"The condition {res_type}?{urlencode(params)} matches more than one resource")
        return [self.resources.delete_in(conn, res_type, i) for i in ids]

    # -- the single match of a condition (conditional patch, conditional references)
    def resolve_id(self, conn: Connection, res_type: str, condition: str, base: str | None, *, none_status: int = 412) -> str:
        """The id of the single match of ``condition``: 412 when several; when none, 412 (a
        conditional reference: the transaction fails) or ``none_status`` (conditional patch:
        404, http.html#patch "No matches: The server returns a 404 Not Found", as HAPI does)."""
        params = parse_condition(condition)
        matches = find_matches(conn, res_type, params, base)
        if not matches and none_status != 412:
            raise FhirError.of(none_status, "not-found", f"The condition {res_type}?{urlencode(params)} matches no resource")
        if len(matches) != 1:
            raise _no_single_match(res_type, params, len(matches))
        return matches[0]

    def resolve_ids(
        self, conn: Connection, res_type: str, conditions: list[str], base: str | None, *, seq: int | None = None
    ) -> dict[str, str | FhirError]:
        """``resolve_id`` of many conditions on one type: each one's id, or the error it raises.

        The ``identifier=system|value`` ones (what Synthea and SATUSEHAT bridges send, dozens per
        Bundle) are asked in one search, ``identifier=s1|v1,s2|v2,...``; each found resource is
        credited to the pairs among its own ``identifier`` index rows. Any other condition, or all
        of them when that search fills its page, is resolved by itself. ``seq``: the change-log
        position ``conn`` (a read outside any write transaction) saw before: identifier conditions
        answered before that still hold there need no search (``resolved_identifiers``)."""
        out: dict[str, str | FhirError] = {}
        pairs: dict[tuple[str, str], str] = {}
        for condition in dict.fromkeys(conditions):
            pair = _identifier_pair(condition)
            if pair is None:
                out[condition] = self._resolve_or_error(conn, res_type, condition, base)
            else:
                pairs[pair] = condition
        known = self.resolved.known(conn, res_type, seq, pairs) if seq is not None and pairs else None
        if known:
            for pair in [p for p in pairs if p in known]:
                out[pairs.pop(pair)] = known[pair]
        self._resolve_pairs(conn, res_type, pairs, base, out)
        if known is not None and seq is not None:
            found = {pair: res_id for pair, condition in pairs.items() if isinstance(res_id := out[condition], str)}
            self.resolved.add(res_type, seq, found)
        return out

    def _resolve_pairs(
        self, conn: Connection, res_type: str, pairs: dict[tuple[str, str], str], base: str | None, out: dict[str, str | FhirError]
    ) -> None:
        """Each ``identifier=system|value`` condition of ``pairs`` resolved into ``out``."""
        if len(pairs) == 1:
            out.update({c: self._resolve_or_error(conn, res_type, c, base) for c in pairs.values()})
            return
        if not pairs:
            return
        limit = 2 * len(pairs) + 1
        value = ",".join(f"{system}|{code}" for system, code in pairs)
        params = [("identifier", value), ("_count", str(limit))]
        try:
            found = run_search(conn, res_type, params, strict=True, default_count=limit, max_count=limit, base_url=base).matches
        except FhirError as exc:  # e.g. a type without an identifier parameter: each condition fails alike
            out.update(dict.fromkeys(pairs.values(), exc))
            return
        if len(found) >= limit:  # a page full: some identifier is shared widely; ask one by one
            out.update({c: self._resolve_or_error(conn, res_type, c, base) for c in pairs.values()})
            return
        ids: dict[tuple[str, str], list[str]] = {pair: [] for pair in pairs}
        for _, res_id, body in found:
            for row in param_rows(jsonio.loads(body), ["identifier"]).get("identifier", []):
                credited = ids.get((row["system"], row["code"]))
                if credited is not None and res_id not in credited:
                    credited.append(res_id)
        for (system, code), condition in pairs.items():
            matches = ids[(system, code)]
            out[condition] = (
                matches[0] if len(matches) == 1 else _no_single_match(res_type, [("identifier", f"{system}|{code}")], len(matches))
            )

    def _resolve_or_error(self, conn: Connection, res_type: str, condition: str, base: str | None) -> str | FhirError:
        try:
            return self.resolve_id(conn, res_type, condition, base)
        except FhirError as exc:
            return exc
