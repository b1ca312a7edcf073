"""FHIR instance and type interactions: create, read, vread, update, delete.

Each public method runs in one transaction. The ``*_in`` variants take an
open connection so that a transaction Bundle can run many of them in one.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Connection

from fhir_server import jsonio
from fhir_server.errors import FhirError, Issue
from fhir_server.model.ids import check_id
from fhir_server.model.validate import raise_errors, validate_resources
from fhir_server.resource_types import SERVER_OWNED
from fhir_server.service.preconditions import is_version, parse_if_match
from fhir_server.service.results import Stored, WriteResult
from fhir_server.storage import changelog
from fhir_server.storage import repository as repo
from fhir_server.storage.db import Database
from fhir_server.timeutil import now_us, to_instant

#: (connection, resource pk, resource dict or None when deleted, fresh=just inserted, rows=pre-extracted) -> None
Indexer = Callable[..., None]
#: (resource, its reference holders or None) -> its search-index rows, extracted before the
#: write transaction (see Prepared)
IndexPreparer = Callable[[dict[str, Any], "list[dict[str, Any]] | None"], Any]
#: (resource type, the stored resource or None when deleted, the previous body) -> None, after commit

_MAX_RETRIES = 5


def _no_index(conn: Connection, pk: int, resource: dict[str, Any] | None, *, fresh: bool = False, rows: Any = None) -> None:
    return None


@dataclass(slots=True)
class Prepared:
    """The CPU-heavy part of a create or update, done before the write transaction.

    Validation and index extraction do not depend on the version or the time
    stamp, so they run outside the write lock (on SQLite only one writer holds
    it at a time; on PostgreSQL the transaction stays shorter). ``error`` is
    raised where validation would have raised, so errors come in the same order.
    """

    res_id: str
    warnings: list[Issue] = field(default_factory=list)
    error: FhirError | None = None
    #: pre-extracted index rows; None when the resource may still change (Bundle references)
    rows: Any = None

    def verdict(self) -> list[Issue]:
        """The validation's warnings, or its error raised."""
        if self.error is not None:
            raise self.error
        return self.warnings


def stamp(resource: dict[str, Any], res_id: str, version: int, updated_us: int) -> dict[str, Any]:
    """The resource with server-owned id and meta.versionId/lastUpdated, other meta kept. A
    ``meta`` that is not an object (a string, an array, null) is left as it is: validation,
    which always comes first, rejects it (400, ``Patient.meta``)."""
    meta = resource.get("meta", {})
    if type(meta) is dict:
        meta = _client_meta(meta)
        meta["versionId"] = str(version)
        meta["lastUpdated"] = to_instant(updated_us)
    out: dict[str, Any] = {"resourceType": resource["resourceType"], "id": res_id, "meta": meta}
    for key, value in resource.items():
        if key not in out:
            out[key] = value
    return out


def _content_equal(stored: bytes | None, new: dict[str, Any]) -> bool:
    """Same resource apart from server-owned meta (an update that changes nothing)."""
    if stored is None:
        return False
    if type(new.get("meta", {})) is not dict:
        return False  # not a resource to store (validation rejects it)
    old = jsonio.loads(stored)
    old_meta = _client_meta(old.pop("meta", None) or {})
    rest = {k: v for k, v in new.items() if k != "meta"}
    return old == rest and old_meta == _client_meta(new.get("meta", {}))


def _client_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """``meta`` without what the server stamps (``versionId``, ``lastUpdated``)."""
    return {k: v for k, v in meta.items() if k not in ("versionId", "lastUpdated")}


class ResourceService:
    def __init__(
        self,
        db: Database,
        indexer: Indexer = _no_index,
        *,
        r4b_model_check: bool = True,
        region_codes: str = "warn",
        prepare_index: IndexPreparer | None = None,
    ) -> None:
        self.db = db
        self.indexer = indexer
        #: extracts index rows ahead of the transaction (``indexer(..., rows=...)`` writes them)
        self.prepare_index = prepare_index
        self.r4b_model_check = r4b_model_check
        #: SATUSEHAT administrativeCode checks: "warn" (unknown codes warn), "strict" (they fail) or "off"
        self.region_codes = region_codes

    @staticmethod
    def _changed(conn: Connection, stored: Stored, action: str) -> None:
        """Every create, update and delete passes here: its change-log row (in this transaction).
        What follows a change (subscriptions, the SATUSEHAT sync, the terminology engine) reads the log."""
        changelog.record(conn, stored.res_type, stored.res_id, stored.version, action, stored.updated_us)

    def _check_writable(self, res_type: str) -> None:
        if res_type in SERVER_OWNED:
            raise FhirError(
                405,
                [Issue("error", "not-supported", f"{res_type} resources are written by the server only")],
                headers={"Allow": "GET"},
            )

    def validate(self, resource: dict[str, Any]) -> list[Issue]:
        """Raise FhirError 400/422 when invalid (with this service's settings); return warnings."""
        verdict = self.verdicts([resource])[0]
        if isinstance(verdict, FhirError):
            raise verdict
        return verdict

    def verdicts(self, resources: Sequence[dict[str, Any]]) -> list[list[Issue] | FhirError]:
        """``validate`` of each resource: its warnings, or the error it raises. One check at a
        time over all of them (``validate_resources``), the verdicts those of ``validate``."""
        out: list[list[Issue] | FhirError] = []
        # the structure check notes the extensions' urls: the region-code check walks only a
        # resource that has one of its extensions
        urls: list[set[str] | None] = [set() for _ in resources]
        found = validate_resources(resources, r4b_model=self.r4b_model_check, extension_urls=urls)
        for resource, issues, extension_urls in zip(resources, found, urls, strict=True):
            try:
                warnings = raise_errors(issues)
                if self.region_codes != "off":
                    from terminology.administrative_code import check_resource_administrative_codes

                    strict = self.region_codes == "strict"
                    checked = check_resource_administrative_codes(resource, strict=strict, extension_urls=extension_urls)
                    warnings = warnings + raise_errors(checked)
                out.append(warnings)
            except FhirError as exc:
                out.append(exc)
        return out

    def write_issues(self, res_type: str, resource: dict[str, Any], res_id: str | None = None) -> list[Issue]:
        """What a create or update of ``resource`` would say, as issues instead of an error:
        the same checks, in the same order, with this service's settings (``$validate``)."""
        try:
            self._check_writable(res_type)
            _check_type(resource, res_type)
            return self.validate(stamp(resource, res_id or "validate", 1, 0))
        except FhirError as exc:
            return exc.issues

    # -- reads ---------------------------------------------------------------
    def read(self, res_type: str, res_id: str) -> Stored:
        check_id(res_id)
        row = repo.read_current(self.db, res_type, res_id)
        if row is None:
            raise FhirError.of(404, "not-found", f"{res_type}/{res_id} is not known")
        if row.deleted:
            raise FhirError(
                410,
                [Issue("error", "deleted", f"{res_type}/{res_id} was deleted (version {row.version})")],
                headers={"ETag": f'W/"{row.version}"'},
            )
        return Stored(res_type, res_id, row.version, row.updated_us, row.body)

    def vread(self, res_type: str, res_id: str, version: str) -> Stored:
        check_id(res_id)
        if not is_version(version):
            raise FhirError.of(404, "not-found", f"{res_type}/{res_id} has no version '{version}'")
        row = repo.read_version(self.db, res_type, res_id, int(version))
        if row is None:
            raise FhirError.of(404, "not-found", f"{res_type}/{res_id} has no version {version}")
        if row.deleted:
            raise FhirError.of(410, "deleted", f"Version {version} of {res_type}/{res_id} is a deletion")
        return Stored(res_type, res_id, row.version, row.updated_us, row.body)

    # -- writes --------------------------------------------------------------
    def create(self, res_type: str, resource: dict[str, Any]) -> WriteResult:
        prepared = self.prepare_create(res_type, resource, index=True)
        if prepared.error is not None:
            raise prepared.error
        with self.db.write() as conn:
            return self.create_in(conn, res_type, resource, prepared.res_id, prepared=prepared)

    def prepare_create(self, res_type: str, resource: Any, res_id: str | None = None, *, index: bool = False) -> Prepared:
        """Check and validate a resource to be created, outside any transaction.

        ``index``: also extract its index rows (only when the resource is final:
        a Bundle entry's references are rewritten later).
        """
        # the server assigns the id of a created resource; a client id is ignored (http.html#create)
        return self.prepare_update(res_type, res_id or str(uuid.uuid4()), resource, index=index)

    def prepare_update(
        self, res_type: str, res_id: str, resource: Any, *, index: bool = False, holders: list[dict[str, Any]] | None = None
    ) -> Prepared:
        """Check and validate a resource to be stored as ``res_type/res_id``, outside any
        transaction (``create_in`` / ``update_in`` with ``prepared=`` then skip it). ``index`` as
        in ``prepare_create``; ``holders``: the resource's ``reference_holders``, if walked."""
        return self.prepare_updates([(res_type, res_id, resource, holders)], index=index)[0]

    def prepare_updates(self, jobs: Sequence[tuple[str, str, Any, list[dict[str, Any]] | None]], *, index: bool = False) -> list[Prepared]:
        """``prepare_update`` of each ``(type, id, resource, holders)``, one step at a time over
        all of them (a transaction Bundle's entries): each step's code stays in the CPU caches."""
        out = [Prepared(res_id) for _, res_id, _, _ in jobs]
        checked: list[tuple[Prepared, dict[str, Any], list[dict[str, Any]] | None]] = []
        for prepared, (res_type, res_id, resource, holders) in zip(out, jobs, strict=True):
            try:
                self._check_writable(res_type)
                _check_type(resource, res_type)
            except FhirError as exc:
                prepared.error = exc
                continue
            # the version and time stamp are not known yet; neither changes the verdict nor the index
            checked.append((prepared, stamp(resource, res_id, 1, 0), holders))
        for (prepared, provisional, holders), verdict in zip(checked, self.verdicts([c[1] for c in checked]), strict=True):
            if isinstance(verdict, FhirError):
                prepared.error = verdict
                continue
            prepared.warnings = verdict
            if index and self.prepare_index is not None:
                try:
                    prepared.rows = self.prepare_index(provisional, holders)
                except FhirError as exc:
                    prepared.error = exc
        return out

    def create_in(
        self,
        conn: Connection,
        res_type: str,
        resource: dict[str, Any],
        res_id: str | None = None,
        *,
        prepared: Prepared | None = None,
    ) -> WriteResult:
        """Create with a server-assigned id (``res_id`` only when a transaction pre-assigned one).

        ``prepared`` (from ``prepare_create`` on this same resource) skips the checks done there.
        """
        if prepared is None:
            prepared = self.prepare_create(res_type, resource, res_id)
        if prepared.error is not None:
            raise prepared.error
        rows = prepared.rows if res_id in (None, prepared.res_id) else None
        res_id = res_id or prepared.res_id
        updated = now_us()
        stamped = stamp(resource, res_id, 1, updated)
        body = jsonio.dumps(stamped)
        pk = repo.insert_new(conn, res_type, res_id, body, updated)
        if pk is None:  # pragma: no cover - a uuid4 collision
            raise FhirError.of(409, "conflict", f"{res_type}/{res_id} already exists")
        repo.add_version(conn, res_type, res_id, 1, updated, "POST", body)
        self.indexer(conn, pk, stamped, fresh=True, rows=rows)
        stored = Stored(res_type, res_id, 1, updated, body)
        self._changed(conn, stored, "create")
        return WriteResult(stored, 201, prepared.warnings, pk)

    def update(self, res_type: str, res_id: str, resource: dict[str, Any], if_match: str | None = None) -> WriteResult:
        with self.db.write() as conn:
            return self.update_in(conn, res_type, res_id, resource, if_match)

    def update_in(
        self,
        conn: Connection,
        res_type: str,
        res_id: str,
        resource: dict[str, Any],
        if_match: str | None = None,
        *,
        method: str = "PUT",
        prepared: Prepared | None = None,
    ) -> WriteResult:
        """Store ``resource`` as the next version of ``res_type/res_id`` (or its first).

        ``prepared`` (from ``prepare_update`` on this same resource and id): its verdict stands in
        for the validation, raised at the same point (after the If-Match and no-change checks)."""
        check_id(res_id)
        self._check_writable(res_type)
        _check_type(resource, res_type)
        if resource.get("id") != res_id:
            # http.html#update: the body SHALL carry the URL's id (said in FHIR's terms: no
            # Python "None" or repr quotes)
            given = resource.get("id")
            what = "has no id" if given is None else f"has the id {jsonio.dumps(given).decode()}"
            raise FhirError.of(400, "invalid", f'The resource {what}: an update needs the id of the URL, "{res_id}"', f"{res_type}.id")
        expected = parse_if_match(if_match) if if_match is not None else None
        warnings: list[Issue] | None = None
        for _ in range(_MAX_RETRIES):
            current = repo.get_current(conn, res_type, res_id, for_update=True)
            if expected is not None and not expected.holds(current.version if current else None, bool(current and current.deleted)):
                have = "does not exist" if current is None else f"is at version {current.version}"
                raise FhirError.of(412, "conflict", f"If-Match expects {expected.expected()} but {res_type}/{res_id} {have}")
            if current is not None and not current.deleted and _content_equal(current.body, resource):
                # unchanged: the stored version was validated when it was written
                return WriteResult(Stored(res_type, res_id, current.version, current.updated_us, current.body), 200, [], current.pk)
            if warnings is None:
                warnings = prepared.verdict() if prepared is not None else self.validate(stamp(resource, res_id, 1, 0))
            rows = prepared.rows if prepared is not None else None
            updated = now_us()
            if current is None:
                stamped = stamp(resource, res_id, 1, updated)
                body = jsonio.dumps(stamped)
                pk = repo.insert_current(conn, res_type, res_id, body, updated)
                if pk is None:
                    continue  # created concurrently: go round again as an update
                repo.add_version(conn, res_type, res_id, 1, updated, method, body)
                self.indexer(conn, pk, stamped, fresh=True, rows=rows)
                stored = Stored(res_type, res_id, 1, updated, body)
                self._changed(conn, stored, "create")
                return WriteResult(stored, 201, warnings, pk)
            version = current.version + 1
            updated = max(updated, current.updated_us + 1)
            stamped = stamp(resource, res_id, version, updated)
            body = jsonio.dumps(stamped)
            if not repo.replace_current(conn, current.pk, current.version, body, updated, deleted=False):
                if expected is not None:
                    raise FhirError.of(412, "conflict", f"{res_type}/{res_id} was changed concurrently")
                continue
            repo.add_version(conn, res_type, res_id, version, updated, method, body)
            self.indexer(conn, current.pk, stamped, rows=rows)
            stored = Stored(res_type, res_id, version, updated, body)
            # a PUT after a delete brings the resource back: a create for whoever follows the log
            self._changed(conn, stored, "create" if current.deleted else "update")
            return WriteResult(stored, 201 if current.deleted else 200, warnings, current.pk)
        raise FhirError.of(409, "conflict", f"{res_type}/{res_id} is being changed by other clients; retry")

    def patch(self, res_type: str, res_id: str, content_type: str, body: Any, if_match: str | None = None) -> WriteResult:
        with self.db.write() as conn:
            return self.patch_in(conn, res_type, res_id, content_type, body, if_match)

    def patch_in(
        self, conn: Connection, res_type: str, res_id: str, content_type: str, body: Any, if_match: str | None = None
    ) -> WriteResult:
        """Apply a JSON Patch, JSON Merge Patch or FHIRPath Patch (``content_type``: ``service.patch.patch_format``)
        to the current version and store the result as an update (an invalid result: 422)."""
        self._check_writable(res_type)
        current = self.read_in(conn, res_type, res_id, for_update=True)
        expected = parse_if_match(if_match) if if_match is not None else None
        if expected is not None and not expected.holds(current.version):
            raise FhirError.of(
                412, "conflict", f"If-Match expects {expected.expected()} but {res_type}/{res_id} is at version {current.version}"
            )
        assert current.body is not None
        from fhir_server.service.patch import apply_patch  # fhirpathpy and jsonpatch: loaded on the first PATCH

        patched = apply_patch(jsonio.loads(current.body), content_type, body)
        if patched.get("resourceType") != res_type or patched.get("id") != res_id:
            raise FhirError.of(400, "invalid", "A patch may not change resourceType or id")
        prepared = self.prepare_update(res_type, res_id, patched)
        if prepared.error is not None:
            # the request (the patch) was understood; the resource it leads to is what is
            # invalid: 422, as for any rule a well-formed request breaks
            raise FhirError(422, prepared.error.issues, prepared.error.headers)
        return self.update_in(conn, res_type, res_id, patched, f'W/"{current.version}"', method="PATCH", prepared=prepared)

    def change_meta_in(
        self,
        conn: Connection,
        res_type: str,
        res_id: str,
        edit: Callable[[dict[str, Any]], None],
    ) -> dict[str, Any]:
        """``$meta-add`` / ``$meta-delete``: ``edit(meta)`` applied to the current version in place
        (tags, profiles and security labels are meta of a version: no new version, as in HAPI);
        validated, re-indexed and logged as an update. The resulting meta."""
        check_id(res_id)
        self._check_writable(res_type)
        current = repo.get_current(conn, res_type, res_id, for_update=True)
        if current is None or current.deleted or current.body is None:
            raise FhirError.of(404 if current is None else 410, "not-found", f"{res_type}/{res_id} is not available")
        resource = jsonio.loads(current.body)
        edit(resource.setdefault("meta", {}))
        self.validate(resource)
        body = jsonio.dumps(resource)
        repo.overwrite_body(conn, current.pk, res_type, res_id, current.version, body)
        self.indexer(conn, current.pk, resource)
        self._changed(conn, Stored(res_type, res_id, current.version, current.updated_us, body), "update")
        return resource["meta"]

    def read_in(self, conn: Connection, res_type: str, res_id: str, *, for_update: bool = False) -> Stored:
        """Read inside an open transaction (sees that transaction's own writes)."""
        check_id(res_id)
        row = repo.get_current(conn, res_type, res_id, for_update=for_update)
        if row is None:
            raise FhirError.of(404, "not-found", f"{res_type}/{res_id} is not known")
        if row.deleted:
            raise FhirError.of(410, "deleted", f"{res_type}/{res_id} was deleted (version {row.version})")
        return Stored(res_type, res_id, row.version, row.updated_us, row.body)

    def delete(self, res_type: str, res_id: str, if_match: str | None = None) -> WriteResult:
        with self.db.write() as conn:
            return self.delete_in(conn, res_type, res_id, if_match)

    def delete_in(self, conn: Connection, res_type: str, res_id: str, if_match: str | None = None) -> WriteResult:
        check_id(res_id)
        self._check_writable(res_type)
        expected = parse_if_match(if_match) if if_match is not None else None
        for _ in range(_MAX_RETRIES):
            current = repo.get_current(conn, res_type, res_id, for_update=True)
            if expected is not None and not expected.holds(current.version if current else None, bool(current and current.deleted)):
                raise FhirError.of(412, "conflict", f"If-Match expects {expected.expected()} of {res_type}/{res_id}")
            if current is None or current.deleted:
                # deleting what is not there succeeds without a new version (http.html#delete)
                version = current.version if current else 0
                ts = current.updated_us if current else 0
                return WriteResult(Stored(res_type, res_id, version, ts, None, deleted=True), 204)
            version = current.version + 1
            updated = max(now_us(), current.updated_us + 1)
            if not repo.replace_current(conn, current.pk, current.version, None, updated, deleted=True):
                if expected is not None:
                    raise FhirError.of(412, "conflict", f"{res_type}/{res_id} was changed concurrently")
                continue
            repo.add_version(conn, res_type, res_id, version, updated, "DELETE", None, deleted=True)
            self.indexer(conn, current.pk, None)
            stored = Stored(res_type, res_id, version, updated, None, deleted=True)
            self._changed(conn, stored, "delete")
            return WriteResult(stored, 204)
        raise FhirError.of(409, "conflict", f"{res_type}/{res_id} is being changed by other clients; retry")


def _check_type(resource: dict[str, Any], res_type: str) -> None:
    if not isinstance(resource, dict):
        raise FhirError.of(400, "structure", "The body must be a JSON object (a FHIR resource)")
    found = resource.get("resourceType")
    if found is None:
        raise FhirError.of(400, "required", f"The resource has no resourceType; the URL is for {res_type}", "resourceType")
    if found != res_type:
        raise FhirError.of(400, "invalid", f"resourceType is {found!r} but the URL is for {res_type}", "resourceType")
