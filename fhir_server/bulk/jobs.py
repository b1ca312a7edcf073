"""Export jobs in the database: create, claim (compare-and-set with a lease), heartbeat, finish, cancel.

Claiming is one ``UPDATE ... WHERE id = ? AND (status = 'queued' OR (status =
'running' AND lease_until_us < now))``: the WHERE clause is the compare of the
compare-and-set, so when two workers (threads or processes) race for the same
job exactly one UPDATE changes a row. PostgreSQL re-checks the WHERE clause of
a row another transaction updated meanwhile; SQLite runs writers one at a time.
Every later write of the worker (heartbeat, finish, fail) also requires
``lease_owner = me AND status = 'running'``, so a worker whose lease was taken
over, or whose job was cancelled, learns it on its next write and stops.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from fhir_server.storage.bulk_tables import export_jobs as t
from fhir_server.storage.db import Database
from fhir_server.timeutil import now_us

#: a job claimed this many times without finishing (its workers died) is marked as failed
MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class Job:
    id: str
    status: str
    level: str
    group_id: str | None
    types: list[str] | None
    since_us: int | None
    output_format: str
    request_url: str
    client_id: str
    created_us: int
    updated_us: int
    transaction_time_us: int | None
    progress: str | None
    lease_owner: str | None
    lease_until_us: int | None
    attempts: int
    manifest: dict[str, Any] | None
    error: str | None
    #: the ``patient`` parameter's ids (None: every patient of the level)
    patient_ids: list[str] | None = None
    #: supported ``includeAssociatedData`` values
    associated_data: tuple[str, ...] = ()
    #: OperationOutcome.issue of each parameter a lenient kick-off ignored (the manifest's error file)
    kickoff_issues: tuple[dict[str, Any], ...] = ()
    #: ``_typeFilter``: type -> search queries (``status=final``), OR-ed; None: no filter
    type_filters: dict[str, list[str]] | None = None
    #: ``_elements``: ``Type.element`` or ``element`` items; None: whole resources
    elements: list[str] | None = None

    @classmethod
    def from_row(cls, row: Any) -> Job:
        m = row._mapping
        return cls(
            id=m["id"],
            status=m["status"],
            level=m["level"],
            group_id=m["group_id"],
            types=[x for x in m["types"].split(",") if x] if m["types"] is not None else None,
            since_us=m["since_us"],
            output_format=m["output_format"],
            request_url=m["request_url"],
            client_id=m["client_id"],
            created_us=m["created_us"],
            updated_us=m["updated_us"],
            transaction_time_us=m["transaction_time_us"],
            progress=m["progress"],
            lease_owner=m["lease_owner"],
            lease_until_us=m["lease_until_us"],
            attempts=m["attempts"],
            manifest=json.loads(m["manifest"]) if m["manifest"] else None,
            error=m["error"],
            patient_ids=json.loads(m["patient_ids"]) if m["patient_ids"] is not None else None,
            associated_data=tuple(x for x in (m["associated_data"] or "").split(",") if x),
            kickoff_issues=tuple(json.loads(m["kickoff_issues"])) if m["kickoff_issues"] else (),
            type_filters=json.loads(m["type_filters"]) if m["type_filters"] else None,
            elements=m["elements"].split(",") if m["elements"] else None,
        )


def create_job_in(
    conn: Connection,
    *,
    level: str,
    request_url: str,
    client_id: str,
    group_id: str | None = None,
    types: list[str] | None = None,
    since_us: int | None = None,
    output_format: str = "application/fhir+ndjson",
    patient_ids: list[str] | None = None,
    associated_data: tuple[str, ...] = (),
    kickoff_issues: tuple[dict[str, Any], ...] = (),
    type_filters: dict[str, list[str]] | None = None,
    elements: list[str] | None = None,
) -> str:
    """Queue a job in the caller's write transaction (the request path: the pipeline's write runner)."""
    job_id = str(uuid.uuid4())
    now = now_us()
    conn.execute(
        t.insert().values(
            id=job_id,
            status="queued",
            level=level,
            group_id=group_id,
            types=",".join(types) if types is not None else None,
            since_us=since_us,
            output_format=output_format,
            request_url=request_url,
            client_id=client_id,
            created_us=now,
            updated_us=now,
            progress="queued",
            attempts=0,
            patient_ids=json.dumps(patient_ids) if patient_ids is not None else None,
            associated_data=",".join(associated_data) or None,
            kickoff_issues=json.dumps(list(kickoff_issues)) if kickoff_issues else None,
            type_filters=json.dumps(type_filters) if type_filters else None,
            elements=",".join(elements) if elements else None,
        )
    )
    return job_id


def get_job(db: Database, job_id: str) -> Job | None:
    with db.read() as conn:
        row = conn.execute(sa.select(t).where(t.c.id == job_id)).first()
    return Job.from_row(row) if row is not None else None


def _claimable(now: int) -> Any:
    return sa.or_(t.c.status == "queued", sa.and_(t.c.status == "running", t.c.lease_until_us < now))


def claim_next(db: Database, owner: str, lease_seconds: float) -> Job | None:
    """Claim the oldest queued job (or running job whose lease expired) for ``owner``; None if none.

    A re-claimed job starts again from scratch (new transaction time, attempts + 1).
    """
    now = now_us()
    with db.read() as conn:
        candidates = list(conn.execute(sa.select(t.c.id, t.c.attempts).where(_claimable(now)).order_by(t.c.created_us, t.c.id).limit(10)))
    for job_id, attempts in candidates:
        with db.write() as conn:
            now = now_us()
            if attempts >= MAX_ATTEMPTS:
                conn.execute(
                    t.update()
                    .where(t.c.id == job_id, _claimable(now))
                    .values(
                        status="error",
                        updated_us=now,
                        lease_owner=None,
                        lease_until_us=None,
                        error=f"The export was abandoned after {attempts} attempts whose workers stopped",
                    )
                )
                continue
            changed = conn.execute(
                t.update()
                .where(t.c.id == job_id, _claimable(now))
                .values(
                    status="running",
                    lease_owner=owner,
                    lease_until_us=now + int(lease_seconds * 1_000_000),
                    attempts=t.c.attempts + 1,
                    transaction_time_us=now,
                    updated_us=now,
                    progress="started",
                    manifest=None,
                    error=None,
                )
            ).rowcount
            if changed == 1:
                row = conn.execute(sa.select(t).where(t.c.id == job_id)).first()
                return Job.from_row(row)
    return None


def _mine(job_id: str, owner: str) -> Any:
    return sa.and_(t.c.id == job_id, t.c.lease_owner == owner, t.c.status == "running")


def heartbeat(db: Database, job_id: str, owner: str, lease_seconds: float, progress: str | None = None) -> bool:
    """Extend the lease (and set the progress text); False when the job is no longer ours
    (cancelled, or taken over after our lease ran out): the worker must stop."""
    now = now_us()
    values: dict[str, Any] = {"lease_until_us": now + int(lease_seconds * 1_000_000), "updated_us": now}
    if progress is not None:
        values["progress"] = progress[:256]
    with db.write() as conn:
        return conn.execute(t.update().where(_mine(job_id, owner)).values(**values)).rowcount == 1


def still_mine(db: Database, job_id: str, owner: str) -> bool:
    """A read-only check (no write lock) that the job is still running under ``owner``'s lease."""
    with db.read() as conn:
        row = conn.execute(sa.select(t.c.id).where(_mine(job_id, owner), t.c.lease_until_us >= now_us())).first()
    return row is not None


def finish(db: Database, job_id: str, owner: str, manifest: dict[str, Any]) -> bool:
    now = now_us()
    with db.write() as conn:
        return (
            conn.execute(
                t.update()
                .where(_mine(job_id, owner))
                .values(
                    status="complete",
                    manifest=json.dumps(manifest),
                    progress="complete",
                    updated_us=now,
                    lease_owner=None,
                    lease_until_us=None,
                )
            ).rowcount
            == 1
        )


def fail(db: Database, job_id: str, owner: str, message: str) -> bool:
    now = now_us()
    with db.write() as conn:
        return (
            conn.execute(
                t.update()
                .where(_mine(job_id, owner))
                .values(
                    status="error",
                    error=message[:4000],
                    progress="error",
                    updated_us=now,
                    lease_owner=None,
                    lease_until_us=None,
                )
            ).rowcount
            == 1
        )


def release(db: Database, job_id: str, owner: str) -> bool:
    """Give a running job back to the queue (its worker is stopping); it will be re-run from scratch."""
    now = now_us()
    with db.write() as conn:
        return (
            conn.execute(
                t.update()
                .where(_mine(job_id, owner))
                .values(
                    status="queued",
                    progress="queued",
                    updated_us=now,
                    lease_owner=None,
                    lease_until_us=None,
                )
            ).rowcount
            == 1
        )


def cancel_in(conn: Connection, job_id: str) -> bool:
    """Mark a job cancelled (whatever its state), in the caller's write transaction; False when
    unknown or already cancelled. A worker running it notices on its next check and stops."""
    return (
        conn.execute(
            t.update()
            .where(t.c.id == job_id, t.c.status != "cancelled")
            .values(
                status="cancelled",
                progress="cancelled",
                updated_us=now_us(),
                lease_owner=None,
                lease_until_us=None,
            )
        ).rowcount
        == 1
    )
