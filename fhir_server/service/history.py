"""History at instance, type and system level (http.html#history)."""

from __future__ import annotations

from contextlib import nullcontext
from urllib.parse import urlencode

from sqlalchemy.engine import Connection

from fhir_server import paging
from fhir_server.errors import FhirError
from fhir_server.model.ids import check_id
from fhir_server.search.parse import drop_empty
from fhir_server.service import bundles
from fhir_server.storage import repository as repo
from fhir_server.storage.db import Database
from fhir_server.timeutil import datetime_range, to_instant

_SUPPORTED = {"_count", "_since", "_at", "_page_token", "_format", "_pretty"}
_STATUS = {"POST": "201 Created", "PUT": "200 OK", "PATCH": "200 OK", "DELETE": "204 No Content"}


class HistoryService:
    def __init__(self, db: Database, default_count: int, max_count: int) -> None:
        self.db = db
        self.default_count = default_count
        self.max_count = max_count

    def history(
        self,
        base: str,
        res_type: str | None,
        res_id: str | None,
        params: list[tuple[str, str]],
        *,
        source: Connection | None = None,
        strict: bool = False,
        lenient: bool = False,
    ) -> bytes:
        """A history Bundle; ``source``: the connection to read in (a transaction's own), else a read.
        A parameter with an empty value (``_count=``) is left out, as in a search; 400 if ``strict``
        (Prefer: handling=strict). A parameter history does not take is 400, unless the client
        asked for ``lenient`` handling (search.html#errors: then it is ignored; a history Bundle
        has no place for a warning)."""
        if res_id is not None:
            check_id(res_id)
        args: dict[str, str] = {}
        if lenient:
            params = [(name, value) for name, value in params if name in _SUPPORTED]
        for name, _ in params:
            if name not in _SUPPORTED:
                raise FhirError.of(400, "not-supported", f"History does not support the parameter '{name}'")
        params = drop_empty(params, strict=strict, what="History parameter")
        for name, value in params:
            args[name] = value
        count = paging.parse_count(args["_count"], self.max_count) if "_count" in args else self.default_count
        since = None
        if "_since" in args:
            try:
                since = datetime_range(args["_since"])[0]
            except ValueError as exc:
                raise FhirError.of(400, "invalid", f"_since: {exc}") from None
        at = None
        if "_at" in args:
            try:
                at = datetime_range(args["_at"])
            except ValueError as exc:
                raise FhirError.of(400, "invalid", f"_at: {exc}") from None
        token = paging.decode_ints(args["_page_token"], "_page_token", 1) if "_page_token" in args else None
        before = (token.keys[0], token.pk) if token is not None else None
        query = repo.HistoryQuery(res_type, res_id, since, at, before, count)
        with self.db.read() if source is None else nullcontext(source) as conn:
            rows = list(repo.history(conn, query))
            if res_id is not None and before is None and not rows and repo.get_current(conn, res_type or "", res_id) is None:
                raise FhirError.of(404, "not-found", f"{res_type}/{res_id} is not known")
        has_next = count > 0 and len(rows) > count  # _count=0: an empty page, and no next one
        rows = rows[:count]

        path = "/".join(p for p in (res_type, res_id) if p)
        url = f"{base}/{path}/_history" if path else f"{base}/_history"
        keep = [(k, v) for k, v in params if k in ("_count", "_since", "_at")]
        links = [("self", url + ("?" + urlencode(params) if params else ""))]
        if has_next:
            last = rows[-1]
            links.append(("next", url + "?" + urlencode([*keep, ("_page_token", paging.encode([last.updated_us], last.pk))])))
        entries = []
        for r in rows:
            full_url = f"{base}/{r.res_type}/{r.res_id}"
            request_url = f"{r.res_type}/{r.res_id}" if r.method != "POST" else r.res_type
            entries.append(
                bundles.entry(
                    full_url,
                    r.body,
                    request={"method": r.method, "url": request_url},
                    response={
                        "status": _STATUS.get(r.method, "200 OK"),
                        "etag": f'W/"{r.version}"',
                        "lastModified": to_instant(r.updated_us),
                    },
                )
            )
        return bundles.bundle("history", entries, links=links)
