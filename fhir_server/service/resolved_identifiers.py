"""What identifier conditions resolved to, kept while the change log shows their type unchanged.

A transaction Bundle of Encounters names the same few Practitioners, Organizations and
Locations by ``Type?identifier=system|value`` as the Bundle before it did, and each Bundle
resolved them again with a search (~5 % of a one-client Synthea ingest). The answer of such a
condition depends only on the stored resources of its type (and on the search parameters,
which SearchParameter resources can change); every write of either is in the change log.
So a type's answers are kept with the change-log position they hold at, and before they are
used again, one indexed read of the log since that position (``changelog.changed_between``)
shows whether any resource of the type changed: if one did, the type's answers are dropped.

Only a read outside any write transaction uses them (``BundleService._rewrite_early``, before
the write lock, at the position it read first): a write transaction's own changes are logged
only at its end, so inside one the log cannot tell. Under the lock the Bundle checks, as it did,
that nothing was committed since that position, and resolves everything again if something was.
Answers are per process; the change log is shared, so writes by other processes (and machines)
invalidate them alike. A purge of the log that took the row at a type's position (``fhir-server
changes purge --days 0``) drops the type's answers too (what the purged rows said is not known),
and a type unchecked for ``TTL_S`` starts again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy.engine import Connection

from fhir_server.storage import changelog

#: a type's answers unchecked for this long are dropped
TTL_S = 60.0
#: answers kept per type, at most (then the type starts again)
LIMIT = 20_000
#: a gap in the change log longer than this is not read: the type's answers are dropped
MAX_SCAN = 50_000
#: what else an identifier condition's answer depends on
_ALSO = ("SearchParameter",)

Pair = tuple[str, str]


@dataclass
class _Known:
    seq: int  # the change-log position the answers hold at
    checked: float = field(default_factory=time.monotonic)  # when that was last checked
    ids: dict[Pair, str] = field(default_factory=dict)

    def among(self, pairs: Iterable[Pair]) -> dict[Pair, str]:
        return {pair: self.ids[pair] for pair in pairs if pair in self.ids}


class ResolvedIdentifiers:
    """Per type: (system, value) -> the id of its single match, as of a change-log position."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._types: dict[str, _Known] = {}

    def known(self, conn: Connection, res_type: str, seq: int, pairs: Iterable[Pair]) -> dict[Pair, str] | None:
        """Those of ``pairs`` whose answers for ``res_type`` hold at ``seq`` (the position
        ``conn``'s read saw before its searches); None when that cannot be told (then what the
        searches find is not kept either)."""
        with self._lock:
            known = self._types.get(res_type)
            if known is not None and time.monotonic() - known.checked > TTL_S:
                del self._types[res_type]
                known = None
            if known is None:
                self._types[res_type] = _Known(seq)
                return {}
            if known.seq > seq:  # answers newer than this read: not for it
                return None
            if known.seq == seq:
                return known.among(pairs)
            since = known.seq
        changed = seq - since > MAX_SCAN or changelog.changed_between(conn, since, seq, (res_type, *_ALSO))
        with self._lock:
            if self._types.get(res_type) is not known or known.seq != since:  # another thread moved it meanwhile
                return None
            if changed:
                self._types[res_type] = _Known(seq)
                return {}
            known.seq, known.checked = seq, time.monotonic()
            return known.among(pairs)

    def add(self, res_type: str, seq: int, ids: dict[Pair, str]) -> None:
        """Answers found by a search at ``seq`` (kept only if the type's answers hold there)."""
        with self._lock:
            known = self._types.get(res_type)
            if known is None or known.seq != seq:
                return
            if len(known.ids) + len(ids) > LIMIT:
                known.ids.clear()
            known.ids.update(ids)
