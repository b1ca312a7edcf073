"""The terminology engine of one database: the packaged content with what clients stored over it.

The engine (terminology/) holds the code systems, value sets and concept maps the server ships.
Clients add their own CodeSystems, ValueSets and ConceptMaps by writing them, perhaps through
another worker or on another machine; the database is the source of truth. So each database
(each SQLAlchemy engine) gets one :class:`StoredTerminology`, which keeps the stored resources that
differ from the packaged ones together with the change-log position they hold at. Before each
use, one read of the log's last position tells whether anything was written since; if so, the
log between the two positions names the terminology resources written, and only those are read
again (all of them when that part of the log was purged or is longer than ``MAX_SCAN``).

A stored copy equal to its packaged original (start-up stores the packaged content: service/seed.py)
is not kept: the packaged one serves. A packaged resource a client deleted is still served from
the package (start-up stores it again).

Reads run on connections of their own, never on a caller's write transaction: what that
transaction wrote is not committed (it may roll back) and not yet in the change log.
"""

from __future__ import annotations

import threading
import weakref
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from fhir_server import jsonio
from fhir_server.storage import changelog
from fhir_server.storage.placeholders import driver_fetchall
from terminology.engine import TerminologyEngine, default_engine
from terminology.store import TERMINOLOGY_TYPES

if TYPE_CHECKING:  # pragma: no cover
    from fhir_server.storage.db import Database

#: a longer stretch of the change log is not read: every stored terminology resource is
MAX_SCAN = 50_000

Key = tuple[str, str]

_IN_TYPES = ", ".join(f"'{t}'" for t in TERMINOLOGY_TYPES)
_ALL = f"SELECT res_type, res_id, body FROM resources WHERE res_type IN ({_IN_TYPES}) AND deleted = FALSE"
_ONE = "SELECT body FROM resources WHERE res_type = ? AND res_id = ? AND deleted = FALSE"


class StoredTerminology:
    """The terminology engine over the packaged content and this database's stored resources."""

    def __init__(self) -> None:
        self._packaged = default_engine()
        self._lock = threading.Lock()
        self._seq: int | None = None  # the change-log position ``_stored`` holds at; None: not read yet
        self._stored: dict[Key, dict[str, Any]] = {}
        self._engine = self._packaged

    def engine(self, db_engine: sa.Engine) -> TerminologyEngine:
        """The engine as of the last change ``db_engine``'s database committed (one read of the
        change log when nothing changed)."""
        with db_engine.connect() as conn:
            seq = changelog.last_seq(conn)
            with self._lock:
                if seq == self._seq:
                    return self._engine
                since, stored = self._seq, dict(self._stored)
            changed = None if since is None or seq - since > MAX_SCAN else changelog.changed_ids(conn, since, seq, TERMINOLOGY_TYPES)
            if changed is None:
                stored = {}
                for res_type, res_id, body in driver_fetchall(conn, _ALL, ()):
                    self._keep(stored, (res_type, res_id), body)
            else:
                for key in changed:
                    stored.pop(key, None)
                    rows = driver_fetchall(conn, _ONE, key)
                    if rows:
                        self._keep(stored, key, rows[0][0])
        engine = self._packaged
        if stored:
            engine = TerminologyEngine(engine.registry.overlaid(stored.values()), engine.max_expansion_size)
        with self._lock:
            if self._seq is None or seq > self._seq:
                self._seq, self._stored, self._engine = seq, stored, engine
        return engine

    @staticmethod
    def _keep(stored: dict[Key, dict[str, Any]], key: Key, body: Any) -> None:
        resource = jsonio.loads(bytes(body))
        if isinstance(resource.get("url"), str) and _without_meta(resource) != _originals().get(key):
            stored[key] = resource


def _without_meta(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k != "meta"}


@lru_cache(maxsize=1)
def _originals() -> dict[Key, dict[str, Any]]:
    """The packaged resources by type and id, as start-up stores them (less ``meta``)."""
    return {(r["resourceType"], r["id"]): _without_meta(r) for r in default_engine().registry.all_resources() if "id" in r}


_BY_ENGINE: weakref.WeakKeyDictionary[sa.Engine, StoredTerminology] = weakref.WeakKeyDictionary()
_BY_ENGINE_LOCK = threading.Lock()


def terminology_engine(source: Database | sa.Connection | sa.Engine) -> TerminologyEngine:
    """The terminology engine of the database ``source`` reads, current as of its last commit."""
    engine = source if isinstance(source, sa.Engine) else source.engine
    with _BY_ENGINE_LOCK:
        found = _BY_ENGINE.get(engine)
        if found is None:
            found = _BY_ENGINE[engine] = StoredTerminology()
    return found.engine(engine)
