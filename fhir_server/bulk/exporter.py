"""Run one export job: NDJSON files of the stored resource bytes, one file per resource type.

What is exported, as of the job's transaction time ``tx``:

* system level: every resource type (or ``_type``);
* Patient level: every Patient and every resource in the Patient compartment
  of any Patient (the official CompartmentDefinition: a resource of a member
  type whose reference search parameter of the compartment points at a Patient);
* Group level: the Patients that are ``Group.member.entity`` (members marked
  ``inactive`` are left out) and the resources in their compartments.

System- and Patient-level exports stream each type in keyset batches on the
``(res_type, res_id)`` unique index (an index both engines have, so every
batch is an index range scan however large the table). A Group-level export
takes its members ``ID_CHUNK`` Patients at a time and streams, in one query
per chunk driven by the reference index, every compartment resource of every
requested type (a resource in two chunks' compartments is written once). A resource changed after ``tx`` is
exported as its version current at ``tx`` (from ``resource_versions``) and a
resource created after ``tx`` is left out, so the files are the state at
``tx`` whatever is written while the export runs. ``_since`` keeps resources
whose (as-of ``tx``) version was written at or after it. Each line is the
stored JSON bytes, never re-serialised. Between batches the exporter calls
``keep(progress)``; when it answers False (cancelled, or the lease was lost)
the export stops. Files are written into a staging folder and moved to
``<export_dir>/<job id>/<Type>.ndjson`` only once every type is done.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from fhir_server import jsonio
from fhir_server.bulk.jobs import Job
from fhir_server.search.compartment import FOCAL
from fhir_server.search.engine import filter_sql
from fhir_server.search.parameters import compartments, resource_types
from fhir_server.search.subsetting import subset
from fhir_server.storage.db import Database
from fhir_server.storage.index_tables import idx_reference
from fhir_server.storage.tables import resource_versions, resources
from fhir_server.timeutil import datetime_range
from fhir_server.urlcodec import parse_qsl

#: patient ids per IN (...) list of a Group-level export
ID_CHUNK = 500


class Cancelled(Exception):
    """The job was cancelled (or taken over by another worker) while it ran."""


@lru_cache(maxsize=1)
def _patient_compartment() -> tuple[tuple[str, tuple[str, ...]], ...]:
    return tuple((t, tuple(p)) for t, p in compartments()["Patient"].items() if p != [FOCAL])


def patient_compartment() -> dict[str, list[str]]:
    """Member resource type -> the reference parameters that put it in a Patient's compartment."""
    return {t: list(p) for t, p in _patient_compartment()}


def patient_types() -> list[str]:
    """Types a Patient- or Group-level export can contain: Patient and the compartment member types."""
    return ["Patient", *sorted(t for t, _ in _patient_compartment() if t != "Patient")]


def job_dir(export_dir: Path, job_id: str) -> Path:
    return export_dir / job_id


def file_path(export_dir: Path, job_id: str, res_type: str) -> Path:
    return job_dir(export_dir, job_id) / f"{res_type}.ndjson"


def error_file_path(export_dir: Path, job_id: str) -> Path:
    """The manifest's error file (OperationOutcomes about the request), apart from the data files."""
    return job_dir(export_dir, job_id) / "error" / "OperationOutcome.ndjson"


def _line(body: bytes) -> bytes:
    # stored bodies are compact JSON (no raw line breaks); guard the NDJSON framing anyway
    if b"\n" in body or b"\r" in body:
        body = jsonio.dumps(jsonio.loads(body))
    return body + b"\n"


def _patient_id(reference: Any) -> str | None:
    if not isinstance(reference, str):
        return None
    parts = reference.split("/")
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) >= 2 and parts[-2] == "Patient" and parts[-1]:
        return parts[-1]
    return None


def group_patient_ids(db: Database, group_id: str) -> list[str]:
    """The Patient ids of a stored Group's active members (ValueError if the Group is not there)."""
    with db.read() as conn:
        row = conn.execute(
            sa.select(resources.c.body, resources.c.deleted).where(resources.c.res_type == "Group", resources.c.res_id == group_id)
        ).first()
    if row is None or row.deleted or row.body is None:
        raise ValueError(f"Group/{group_id} is not known (or was deleted)")
    group = jsonio.loads(row.body)
    ids: dict[str, None] = {}
    for member in group.get("member") or []:
        if not isinstance(member, dict) or member.get("inactive") is True:
            continue
        pid = _patient_id((member.get("entity") or {}).get("reference"))
        if pid is not None:
            ids[pid] = None
    return list(ids)


def _as_of(conn: Any, res_type: str, res_id: str, tx: int) -> tuple[bytes | None, int] | None:
    """The version of a resource current at ``tx``: (body or None if deleted, updated_us); None if none."""
    v = resource_versions
    row = conn.execute(
        sa.select(v.c.body, v.c.deleted, v.c.updated_us)
        .where(v.c.res_type == res_type, v.c.res_id == res_id, v.c.updated_us <= tx)
        .order_by(v.c.version.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    return (None if row.deleted else row.body), row.updated_us


def stream_type(
    db: Database, res_type: str, conditions: list[Any], tx: int, since: int | None, batch_size: int
) -> Iterator[list[tuple[str, bytes]]]:
    """Batches of (res_id, body) of ``res_type`` matching ``conditions``, as of ``tx``; keyset
    pages on the (res_type, res_id) unique index, each in a short read transaction."""
    r = resources
    time_filter = _time_filter(tx, since)
    last: str | None = None
    while True:
        stmt = sa.select(r.c.res_type, r.c.res_id, r.c.updated_us, r.c.body).where(r.c.res_type == res_type, time_filter, *conditions)
        if last is not None:
            stmt = stmt.where(r.c.res_id > last)
        stmt = stmt.order_by(r.c.res_id).limit(batch_size)
        with db.read() as conn:
            rows = list(conn.execute(stmt))
        out = [(res_id, body) for _, res_id, body in _rows_as_of(db, rows, tx, since)]
        if out:
            yield out
        if len(rows) < batch_size:
            return
        last = rows[-1].res_id


def _in_compartment(params: list[str], patient_ids: list[str] | None) -> Any:
    ref = idx_reference
    where = [ref.c.resource_pk == resources.c.pk, ref.c.target_type == "Patient", ref.c.param.in_(params)]
    if patient_ids is not None:
        where.append(ref.c.target_id.in_(patient_ids))
    return sa.select(ref.c.resource_pk).where(*where).exists()


def _time_filter(tx: int, since: int | None) -> Any:
    r = resources
    current = [r.c.deleted == sa.false(), r.c.updated_us <= tx]
    if since is not None:
        current.append(r.c.updated_us >= since)
    # rows changed after tx are kept here and replaced by their version at tx in _rows_as_of
    return sa.or_(sa.and_(*current), r.c.updated_us > tx)


def _rows_as_of(db: Database, rows: list[Any], tx: int, since: int | None) -> list[tuple[str, str, bytes]]:
    """(res_type, res_id, body) of rows, those changed after ``tx`` replaced by their version at tx."""
    out: list[tuple[str, str, bytes]] = []
    late = [row for row in rows if row.updated_us > tx]
    older: dict[tuple[str, str], tuple[bytes | None, int] | None] = {}
    if late:
        with db.read() as conn:
            for row in late:
                older[(row.res_type, row.res_id)] = _as_of(conn, row.res_type, row.res_id, tx)
    for row in rows:
        body = row.body
        if row.updated_us > tx:
            version = older[(row.res_type, row.res_id)]
            if version is None or version[0] is None or (since is not None and version[1] < since):
                continue
            body = version[0]
        if body is not None:
            out.append((row.res_type, row.res_id, body))
    return out


def stream_group_chunk(
    db: Database,
    members: dict[str, list[str]],
    patient_ids: list[str],
    tx: int,
    since: int | None,
    batch_size: int,
    conditions: list[Any] | None = None,
) -> Iterator[list[tuple[str, str, bytes]]]:
    """Batches of (res_type, res_id, body) in the compartments of ``patient_ids``, every type at once:
    one query driven by the reference index (the Patients' references), streamed; ``conditions``
    narrow the rows further (``_typeFilter``)."""
    r, ref = resources, idx_reference
    inner = r.alias("member")
    pairs = sa.or_(*(sa.and_(inner.c.res_type == t, ref.c.param.in_(p)) for t, p in members.items()))
    pks = (
        sa.select(ref.c.resource_pk)
        .select_from(ref.join(inner, inner.c.pk == ref.c.resource_pk))
        .where(ref.c.target_type == "Patient", ref.c.target_id.in_(patient_ids), pairs)
    )
    stmt = (
        sa.select(r.c.res_type, r.c.res_id, r.c.updated_us, r.c.body)
        .where(r.c.pk.in_(pks), _time_filter(tx, since), *(conditions or []))
        .order_by(r.c.pk)
    )
    with db.read() as conn:
        result = conn.execution_options(stream_results=True, yield_per=batch_size).execute(stmt)
        for rows in result.partitions(batch_size):
            batch = _rows_as_of(db, list(rows), tx, since)
            if batch:
                yield batch


class _Files:
    """The NDJSON files of one export, opened on their first resource, with counts (and
    duplicate suppression when the same resource can come from two queries)."""

    def __init__(self, folder: Path, dedupe: bool, shape: Callable[[str, bytes], bytes] | None = None) -> None:
        self.folder = folder
        #: (type, body) -> the line's resource (``_elements``); None: the stored bytes
        self.shape = shape
        self.handles: dict[str, Any] = {}
        self.counts: dict[str, int] = {}
        self.seen: set[tuple[str, str]] | None = set() if dedupe else None

    def write(self, batch: list[tuple[str, str, bytes]]) -> None:
        lines: dict[str, list[bytes]] = {}
        for res_type, res_id, body in batch:
            if self.seen is not None:
                if (res_type, res_id) in self.seen:
                    continue
                self.seen.add((res_type, res_id))
            lines.setdefault(res_type, []).append(_line(self.shape(res_type, body) if self.shape else body))
        for res_type, chunk in lines.items():
            handle = self.handles.get(res_type)
            if handle is None:
                handle = self.handles[res_type] = open(self.folder / f"{res_type}.ndjson", "wb")  # noqa: SIM115 - open across batches, closed by close()
            handle.write(b"".join(chunk))
            self.counts[res_type] = self.counts.get(res_type, 0) + len(chunk)

    def close(self) -> None:
        for handle in self.handles.values():
            handle.close()
        self.handles.clear()

    def progress(self, where: str) -> str:
        return f"{sum(self.counts.values())} resources written; {where}"


def existing_patients(db: Database, patient_ids: list[str]) -> set[str]:
    """Those of ``patient_ids`` that are stored and not deleted."""
    found: set[str] = set()
    r = resources
    with db.read() as conn:
        for i in range(0, len(patient_ids), ID_CHUNK):
            chunk = patient_ids[i : i + ID_CHUNK]
            rows = conn.execute(sa.select(r.c.res_id).where(r.c.res_type == "Patient", r.c.res_id.in_(chunk), r.c.deleted == sa.false()))
            found.update(row.res_id for row in rows)
    return found


def _provenance_of_compartments(members: dict[str, list[str]], patient_ids: list[str] | None) -> Any:
    """Provenance whose ``target`` is a Patient of ``patient_ids`` (None: any) or a resource in
    such a Patient's compartment: the IG's rule for the Provenance of a Patient / Group export
    ("all available Provenance resources whose Provenance.target is a resource in the Patient
    compartment")."""
    pref, cref, tgt = idx_reference.alias("pref"), idx_reference.alias("cref"), resources.alias("tgt")
    direct = [pref.c.target_type == "Patient"]
    in_compartment = [cref.c.target_type == "Patient"]
    if patient_ids is not None:
        direct.append(pref.c.target_id.in_(patient_ids))
        in_compartment.append(cref.c.target_id.in_(patient_ids))
    pairs = sa.or_(*(sa.and_(tgt.c.res_type == t, cref.c.param.in_(p)) for t, p in members.items() if t not in ("Patient", "Provenance")))
    via_member = (
        sa.select(cref.c.resource_pk)
        .select_from(cref.join(tgt, tgt.c.pk == cref.c.resource_pk))
        .where(tgt.c.res_type == pref.c.target_type, tgt.c.res_id == pref.c.target_id, pairs, *in_compartment)
        .exists()
    )
    return (
        sa.select(pref.c.resource_pk)
        .where(pref.c.resource_pk == resources.c.pk, pref.c.param == "target", sa.or_(sa.and_(*direct), via_member))
        .exists()
    )


def provenance_of(
    db: Database, targets: list[tuple[str, str]], tx: int, since: int | None
) -> list[tuple[str, bytes, list[tuple[str, str]]]]:
    """The Provenance resources (as of ``tx``, changed since ``since``) whose ``target`` is one of
    ``targets`` (type, id): (id, body, the targets of the list each points at)."""
    if not targets:
        return []
    r, ref = resources, idx_reference
    by_type: dict[str, list[str]] = {}
    for res_type, res_id in targets:
        by_type.setdefault(res_type, []).append(res_id)
    wanted = sa.or_(*(sa.and_(ref.c.target_type == t, ref.c.target_id.in_(ids)) for t, ids in by_type.items()))
    stmt = (
        sa.select(r.c.res_type, r.c.res_id, r.c.updated_us, r.c.body, ref.c.target_type, ref.c.target_id)
        .select_from(r.join(ref, ref.c.resource_pk == r.c.pk))
        .where(r.c.res_type == "Provenance", ref.c.param == "target", wanted, _time_filter(tx, since))
    )
    with db.read() as conn:
        rows = list(conn.execute(stmt))
    pointed: dict[str, list[tuple[str, str]]] = {}
    unique: dict[str, Any] = {}
    for row in rows:
        pointed.setdefault(row.res_id, []).append((row.target_type, row.target_id))
        unique[row.res_id] = row
    return [(res_id, body, pointed[res_id]) for _, res_id, body in _rows_as_of(db, list(unique.values()), tx, since)]


def _recorded_us(body: bytes) -> int:
    """When a Provenance was recorded (``Provenance.recorded``, 1..1 in R4), to find the latest."""
    recorded = jsonio.loads(body).get("recorded")
    try:
        return datetime_range(recorded)[0] if isinstance(recorded, str) else 0
    except ValueError:
        return 0


class _AssociatedProvenance:
    """``includeAssociatedData``: the Provenance of the resources written (all of them, or the most
    recent per resource), fetched after each batch and written into the Provenance file."""

    def __init__(self, db: Database, files: _Files, latest: bool, tx: int, since: int | None) -> None:
        self.db, self.files, self.latest, self.tx, self.since = db, files, latest, tx, since
        self.written: set[str] = set()

    def after(self, batch: list[tuple[str, str, bytes]]) -> None:
        found = provenance_of(self.db, [(t, i) for t, i, _ in batch if t != "Provenance"], self.tx, self.since)
        if self.latest:
            best: dict[tuple[str, str], tuple[tuple[int, str], str]] = {}
            for res_id, body, targets in found:
                rank = (_recorded_us(body), res_id)
                for target in targets:
                    if target not in best or rank > best[target][0]:
                        best[target] = (rank, res_id)
            keep = {res_id for _, res_id in best.values()}
            found = [f for f in found if f[0] in keep]
        new = [("Provenance", res_id, body) for res_id, body, _ in found if res_id not in self.written]
        self.written.update(res_id for _, res_id, _ in new)
        self.files.write(new)


def export_base(request_url: str) -> str:
    """The FHIR base of a kick-off URL (``.../fhir/Group/1/$export?...`` -> ``.../fhir``)."""
    path = request_url.partition("?")[0].rpartition("/$export")[0]
    head, _, last = path.rpartition("/")
    if last == "Patient":
        return head
    before, _, kind = head.rpartition("/")
    return before if kind == "Group" else path


def type_filters(db: Database, job: Job) -> dict[str, Any]:
    """``_typeFilter`` as one SQL condition per filtered type: the row is a current match of any of
    the type's queries (the search engine's own SQL, ``search.engine.filter_sql``). The match is
    decided on the search index as it is now, like the Provenance of compartments (a resource
    changed after ``transactionTime`` is exported as of then if it matches now)."""
    out: dict[str, Any] = {}
    base = export_base(job.request_url)
    for n, (res_type, queries) in enumerate(sorted((job.type_filters or {}).items())):
        sql, params = filter_sql(db, res_type, [parse_qsl(q) for q in queries], base_url=base, prefix=f"tf{n}_")
        out[res_type] = sa.text(f"resources.pk IN ({sql})").bindparams(**params)
    return out


def elements_shape(elements: list[str] | None) -> Callable[[str, bytes], bytes] | None:
    """``_elements`` (Bulk Data 2.0): each resource keeps the listed top-level elements (``element``
    for every type, ``Type.element`` for one) and its mandatory ones, and is tagged SUBSETTED; a
    type that no item names is exported whole."""
    if not elements:
        return None
    common = [e for e in elements if "." not in e]
    by_type: dict[str, list[str]] = {}
    for item in elements:
        if "." in item:
            res_type, _, name = item.partition(".")
            by_type.setdefault(res_type, []).append(name)

    def shape(res_type: str, body: bytes) -> bytes:
        kept = [*common, *by_type.get(res_type, ())]
        return subset(body, res_type, None, kept) if kept else body

    return shape


def _write_errors(folder: Path, issues: tuple[dict[str, Any], ...]) -> int:
    """The manifest's error file: one OperationOutcome per issue (one per ignored parameter)."""
    if not issues:
        return 0
    (folder / "error").mkdir(exist_ok=True)
    lines = [_line(jsonio.dumps({"resourceType": "OperationOutcome", "issue": [issue]})) for issue in issues]
    (folder / "error" / "OperationOutcome.ndjson").write_bytes(b"".join(lines))
    return len(lines)


def run_export(db: Database, job: Job, export_dir: Path, keep: Callable[[str], bool], batch_size: int = 1000) -> dict[str, Any]:
    """Export ``job``; returns the stored manifest part ``{"output": [{"type", "count"}]}`` (and
    ``"error": [{"count"}]`` when the kick-off ignored parameters).

    Raises :class:`Cancelled` when ``keep`` answers False (the staging files are removed).
    """
    tx = job.transaction_time_us
    if tx is None:
        raise ValueError("the job has no transaction time (it was not claimed)")
    since = job.since_us
    target = job_dir(export_dir, job.id)
    staging = target / f".part-{uuid.uuid4().hex}"
    staging.mkdir(parents=True, exist_ok=True)
    files: _Files | None = None

    def check(where: str) -> None:
        if not keep(files.progress(where) if files else where):
            raise Cancelled(job.id)

    try:
        members = patient_compartment()
        if job.level == "system":
            types = list(job.types if job.types is not None else resource_types())
        else:
            types = [t for t in (job.types if job.types is not None else patient_types()) if t == "Patient" or t in members]
        associated = None
        if job.associated_data:
            # includeAssociatedData decides which Provenance leaves ("Other Provenance resources will
            # not be returned" for Latest); with both values the least restrictive, Relevant, applies
            associated = "relevant" if "RelevantProvenanceResources" in job.associated_data else "latest"
            types = [t for t in types if t != "Provenance"]
        ids = _patient_ids(db, job)
        filters = type_filters(db, job)
        # a resource in the compartments of two chunks of Patients would come twice
        out = files = _Files(staging, dedupe=ids is not None and len(ids) > ID_CHUNK, shape=elements_shape(job.elements))
        extra = _AssociatedProvenance(db, out, associated == "latest", tx, since) if associated else None

        def write(batch: list[tuple[str, str, bytes]], where: str) -> None:
            out.write(batch)
            if extra is not None:
                extra.after(batch)
            check(where)

        if ids is not None:
            _export_patients(db, ids, types, members, tx, since, batch_size, write, filters)
        else:
            for n, res_type in enumerate(types, 1):
                where = f"{res_type} (type {n} of {len(types)})"
                if job.level == "system" or res_type == "Patient":
                    conditions: list[Any] = []
                elif res_type == "Provenance":
                    conditions = [_provenance_of_compartments(members, None)]
                else:
                    conditions = [_in_compartment(members[res_type], None)]
                if res_type in filters:
                    conditions.append(filters[res_type])
                for batch in stream_type(db, res_type, conditions, tx, since, batch_size):
                    write([(res_type, res_id, body) for res_id, body in batch], where)
                check(where)
        files.close()
        listed = [*types, *(["Provenance"] if associated else [])]
        outputs = [{"type": t, "count": files.counts[t]} for t in listed if files.counts.get(t)]
        for item in outputs:
            os.replace(staging / f"{item['type']}.ndjson", target / f"{item['type']}.ndjson")
        errors = _write_errors(staging, job.kickoff_issues)
        if errors:
            (target / "error").mkdir(exist_ok=True)
            os.replace(staging / "error" / "OperationOutcome.ndjson", error_file_path(export_dir, job.id))
    finally:
        if files is not None:
            files.close()
        shutil.rmtree(staging, ignore_errors=True)
    return {"output": outputs, **({"error": [{"type": "OperationOutcome", "count": errors}]} if errors else {})}


def _patient_ids(db: Database, job: Job) -> list[str] | None:
    """The Patients of a Group export (its active members), or of the ``patient`` parameter (at
    Group level: those that are members); None: every Patient (system level, Patient level)."""
    if job.level == "group":
        ids = group_patient_ids(db, job.group_id or "")
        if job.patient_ids is not None:
            asked = set(job.patient_ids)
            ids = [i for i in ids if i in asked]
        return ids
    if job.level == "patient" and job.patient_ids is not None:
        return list(job.patient_ids)
    return None


def _export_patients(
    db: Database,
    ids: list[str],
    types: list[str],
    members: dict[str, list[str]],
    tx: int,
    since: int | None,
    batch_size: int,
    write: Callable[[list[tuple[str, str, bytes]], str], None],
    filters: dict[str, Any],
) -> None:
    """The listed Patients and their compartments, ``ID_CHUNK`` Patients at a time."""
    wanted = {t: members[t] for t in types if t not in ("Patient", "Provenance")}
    # one query for every compartment type: a filtered type's rows must match its filter
    compartment_filter = [sa.or_(resources.c.res_type != t, cond) for t, cond in filters.items() if t in wanted]
    for n, start in enumerate(range(0, len(ids), ID_CHUNK), 1):
        chunk = ids[start : start + ID_CHUNK]
        where = f"patients {min(n * ID_CHUNK, len(ids))} of {len(ids)}"
        if "Patient" in types:
            conditions = [resources.c.res_id.in_(chunk), *([filters["Patient"]] if "Patient" in filters else [])]
            for batch in stream_type(db, "Patient", conditions, tx, since, batch_size):
                write([("Patient", res_id, body) for res_id, body in batch], where)
        if wanted:
            for group_batch in stream_group_chunk(db, wanted, chunk, tx, since, batch_size, compartment_filter):
                write(group_batch, where)
        if "Provenance" in types:
            conditions = [_provenance_of_compartments(members, chunk), *([filters["Provenance"]] if "Provenance" in filters else [])]
            for batch in stream_type(db, "Provenance", conditions, tx, since, batch_size):
                write([("Provenance", res_id, body) for res_id, body in batch], where)


def remove_files(export_dir: Path, job_id: str) -> None:
    shutil.rmtree(job_dir(export_dir, job_id), ignore_errors=True)
