"""Judging a change by the very version it produced, with the same search engine.

The matcher asks the search engine which changed resources a subscription selects; a search
sees the resources as they are *now*. Usually that is the version the change produced (the
matcher runs milliseconds after the commit). When the resource has changed again since, the
search would judge the older change by the newer version: an update that stopped matching
before the matcher ran would hide the earlier matching version (a lost notification), and a
version that did not match would be notified because a later one does.

So, after its searches, the matcher reads the current versions (:func:`current_versions`): a
change whose version is still current was judged exactly (versions only grow, so the searches
before that read saw it too). For the others (:func:`probe`), in one write transaction that is
always rolled back, each such version is made the current one again (its ``resources`` row and
its search-index rows) and the subscriptions' own searches run on that transaction's connection
(``source=conn``): the same parameters, the same engine, the same scopes. Nothing of it is ever
committed; on SQLite it holds the write lock for those few searches, on PostgreSQL it locks the
rows of those resources until the rollback.

What a probe cannot restore: other resources a chained parameter looks into are judged as they
are when the probe runs (docs/subscriptions.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from fhir_server import jsonio
from fhir_server.errors import FhirError
from fhir_server.service.access import Principal
from fhir_server.service.indexing import index_resource
from fhir_server.service.search import SearchService
from fhir_server.storage import repository as repo
from fhir_server.storage.group_commit import Writes
from fhir_server.storage.tables import resources

#: (type, id, version) of a change
Version = tuple[str, str, int]


@dataclass(frozen=True)
class Asker:
    """A subscription's question about some versions: does its search select them?"""

    sub_id: str
    res_type: str
    params: list[tuple[str, str]]
    principal: Principal
    versions: frozenset[Version]


def current_versions(conn: Connection, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], tuple[int, bool]]:
    """(version, deleted) of the current row of each (type, id) that exists."""
    by_type: dict[str, list[str]] = {}
    for res_type, res_id in keys:
        by_type.setdefault(res_type, []).append(res_id)
    out: dict[tuple[str, str], tuple[int, bool]] = {}
    c = resources.c
    for res_type, ids in by_type.items():
        for i in range(0, len(ids), 500):
            stmt = sa.select(c.res_id, c.version, c.deleted).where(c.res_type == res_type, c.res_id.in_(ids[i : i + 500]))
            for res_id, version, deleted in conn.execute(stmt):
                out[(res_type, res_id)] = (int(version), bool(deleted))
    return out


class _Verdicts(Exception):
    """Carries the probe's answers out of the transaction it rolls back."""

    def __init__(self, found: set[tuple[str, Version]]) -> None:
        super().__init__("rolled back on purpose")
        self.found = found


async def probe(writes: Writes, search: SearchService, base: str, askers: list[Asker]) -> set[tuple[str, Version]]:
    """(subscription, version) pairs where the subscription's search selects that version."""

    def work(conn: Connection) -> None:
        found: set[tuple[str, Version]] = set()
        versions = sorted({v for a in askers for v in a.versions})
        for version in versions:
            if not _restore(conn, version):
                continue  # that version is gone or a deletion: nothing selects it
            res_type, res_id, _ = version
            for a in askers:
                if version not in a.versions:
                    continue
                params = [*a.params, ("_id", res_id), ("_count", "1")]
                try:
                    result = search.run(base, res_type, params, strict=False, principal=a.principal, source=conn)
                except FhirError:  # as in the matcher's own search: the client may no longer search a chained type
                    continue
                if result.matches:
                    found.add((a.sub_id, version))
        raise _Verdicts(found)

    try:
        await writes.run(work, alone=True)
    except _Verdicts as verdicts:
        return verdicts.found
    raise AssertionError("the probe transaction must be rolled back")  # pragma: no cover


def _restore(conn: Connection, version: Version) -> bool:
    """Make ``version`` the current one, inside this (doomed) transaction."""
    res_type, res_id, number = version
    current = repo.get_current(conn, res_type, res_id, for_update=True)
    stored = repo.get_version(conn, res_type, res_id, number)
    if current is None or stored is None or stored.deleted or stored.body is None:
        return False
    body = repo.as_bytes(stored.body)
    assert body is not None
    conn.execute(
        resources.update()
        .where(resources.c.pk == current.pk)
        .values(version=number, body=body, updated_us=stored.updated_us, deleted=False)
    )
    index_resource(conn, current.pk, jsonio.loads(body))
    return True
