"""``fhir-server import``: NDJSON files, Bundles, directories and .gz files into the database.

Every resource is written with PUT ``Type/id`` in transactions of ``batch_size``
entries, so a re-run changes nothing: ids come from the resource, else from a
``urn:uuid:`` fullUrl, else from a hash of the content; references to
``urn:uuid:`` fullUrls inside a Bundle are rewritten to those ids. The files are
read first and written in the order of their references (``import_order``), so
a set of files whose references point into each other loads in any file order.
A batch that fails is retried entry by entry, so one bad resource costs only
itself and is reported with its file and line. With ``workers`` the transactions are
written by that many forked processes at once (``import_workers``), each transaction
once every one it depends on is committed; a process forked before the reading starts builds
the model classes and index plans of the types read meanwhile, and the workers are forked from it.
"""

from __future__ import annotations

import asyncio
import gc
import gzip
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from fhir_server import jsonio
from fhir_server.errors import FhirError
from fhir_server.model.ids import is_valid_id
from fhir_server.model.references import reference_holders
from fhir_server.service import import_order, import_workers, warm
from fhir_server.service.access import OPEN
from fhir_server.service.import_order import Node
from fhir_server.service.pipeline import Interaction, Pipeline
from fhir_server.service.results import MINIMAL

_NAMESPACE = uuid.UUID("2f8f0f4e-5a86-5b0c-8f3e-6b1f3c8e2d71")
_SUFFIXES = (".ndjson", ".json", ".ndjson.gz", ".json.gz")


@dataclass
class Item:
    resource: dict[str, Any]
    where: str  # "file:line" or "file#entry[i]"
    #: the line as read, when it is the resource unchanged (its id kept): no need to write it out again
    raw: bytes | None = None


class Job(NamedTuple):
    """One resource to write (what a worker process is sent of it)."""

    node: int  # its index in the import's nodes
    res_type: str
    res_id: str
    body: bytes
    #: conditional reference -> the literal reference standing in for it (``import_order.Plan.placeholders``)
    targets: dict[str, str] | None = None


@dataclass
class ImportSummary:
    created: Counter = field(default_factory=Counter)
    existing: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    #: literal references whose target is neither in the import nor stored (the server stores them)
    warnings: list[str] = field(default_factory=list)
    files: int = 0
    #: resources read
    total: int = 0


def find_files(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out += sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(_SUFFIXES))
        else:
            out.append(path)
    return out


def _open(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.name.endswith(".gz") else data


def _stable_id(resource: dict[str, Any], full_url: str | None) -> str:
    if isinstance(resource.get("id"), str) and is_valid_id(resource["id"]):
        return resource["id"]
    if full_url and full_url.startswith("urn:uuid:") and is_valid_id(full_url[9:]):
        return full_url[9:]
    return str(uuid.uuid5(_NAMESPACE, jsonio.dumps(resource).decode()))


def _rewrite(node: Any, references: dict[str, str]) -> None:
    for holder in reference_holders(node):
        if holder["reference"] in references:
            holder["reference"] = references[holder["reference"]]


def read_items(path: Path, errors: list[str]) -> Iterator[Item]:
    """The resources of one file, with a stable id each; unreadable lines go to ``errors``."""
    raw = _open(path)
    name = path.name.removesuffix(".gz")
    if name.endswith(".ndjson"):
        for number, line in enumerate(raw.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                resource = jsonio.loads_client(line)
            except jsonio.JsonError as exc:
                errors.append(f"{path}:{number}: {exc}")
                continue
            if not isinstance(resource, dict) or "resourceType" not in resource:
                errors.append(f"{path}:{number}: not a FHIR resource")
                continue
            res_id = _stable_id(resource, None)
            unchanged = resource.get("id") == res_id
            resource["id"] = res_id
            yield Item(resource, f"{path}:{number}", line if unchanged else None)
        return
    try:
        document = jsonio.loads_client(raw)
    except jsonio.JsonError as exc:
        errors.append(f"{path}: {exc}")
        return
    if not isinstance(document, dict) or "resourceType" not in document:
        errors.append(f"{path}: not a FHIR resource or Bundle")
        return
    if document["resourceType"] != "Bundle":
        document["id"] = _stable_id(document, None)
        yield Item(document, str(path))
        return
    entries = [e for e in document.get("entry") or [] if isinstance(e, dict) and isinstance(e.get("resource"), dict)]
    references: dict[str, str] = {}
    for entry in entries:
        resource = entry["resource"]
        resource["id"] = _stable_id(resource, entry.get("fullUrl"))
        if entry.get("fullUrl"):
            references[entry["fullUrl"]] = f"{resource.get('resourceType')}/{resource['id']}"
    for index, entry in enumerate(entries):
        _rewrite(entry["resource"], references)
        yield Item(entry["resource"], f"{path}#entry[{index}]")


class _WorkersOnDemand:
    """The import's worker processes, started once it is sure to need them: when more resources
    are read than one transaction holds. A smaller import is one transaction, written by this
    process; its zygote would only have built models on the other core and ended (~0.3-0.5 s
    more for a file of 13 Patients). The first resource of each type read before they start is
    warmed up then."""

    def __init__(self, start: Callable[[], import_workers.Workers], batch_size: int) -> None:
        self._start = start
        self._batch_size = batch_size
        self._firsts: list[Job] = []
        self.workers: import_workers.Workers | None = None

    def first_of_type(self, job: Job) -> None:
        if self.workers is not None:
            self.workers.warm(job)
        else:
            self._firsts.append(job)

    def read(self, count: int) -> None:
        """``count`` resources read so far."""
        if self.workers is None and count > self._batch_size:
            self.workers = self._start()
            for job in self._firsts:
                self.workers.warm(job)
            self._firsts.clear()


class Importer:
    """``fhir-server import``: batches of PUTs sent through the pipeline as transaction Bundles by
    the server itself (the open principal), so every check, the change log and the write path
    are the ones every request goes through.

    All files are read first; the resources are then written in the order of the graph of their
    references (``import_order``): a conditional reference's target is committed before the
    resource that refers to it, whichever file holds it, and a cycle of conditional references
    is written in two passes. At the end every literal reference of a written resource is checked:
    one whose target is neither written by the import nor stored is reported as a warning (the
    server stores such references, so the import does too).
    """

    def __init__(
        self,
        pipeline: Pipeline,
        base: str = "urn:fhir-server:import",
        batch_size: int = 500,
        *,
        workers: int = 1,
        worker_pipeline: Callable[[], AbstractContextManager[Pipeline]] | None = None,
        serial_types: frozenset[str] = frozenset(),
    ) -> None:
        """``workers`` > 1: the transactions are written by that many forked processes, each
        through the pipeline ``worker_pipeline()`` gives it (its own database connections);
        ``serial_types``: types whose writes look at the stored resources of their type (Patients
        when the MPI flags duplicates), whose transactions are then written one after the other."""
        self.pipeline = pipeline
        self.base = base
        self.batch_size = batch_size
        self.workers = workers
        self.worker_pipeline = worker_pipeline
        self.serial_types = serial_types

    def _handle(self, interaction: Interaction) -> Any:
        answer = asyncio.run(self.pipeline.handle(interaction))
        return jsonio.loads(answer.body or b"{}")

    def _bundle(self, kind: str, entries: list[dict[str, Any]]) -> Any:
        bundle = {"resourceType": "Bundle", "type": kind, "entry": entries}
        return self._handle(Interaction("transaction", self.base, OPEN, body=bundle, returns=MINIMAL))

    def read(self, paths: list[Path], summary: ImportSummary, workers: _WorkersOnDemand | None = None) -> list[Node]:
        """Every resource of every file (unreadable ones go to ``summary.errors``); ``workers``
        is told of each resource read, and given the first of each type."""
        nodes: list[Node] = []
        types: set[str] = set()
        for path in find_files(paths):
            summary.files += 1
            if not path.exists():
                summary.errors.append(f"{path}: no such file")
                continue
            for item in read_items(path, summary.errors):
                literal, conditional = import_order.references(item.resource)
                node = Node(
                    str(item.resource["resourceType"]),
                    item.resource["id"],
                    item.where,
                    item.raw if item.raw is not None else jsonio.dumps(item.resource),
                    literal,
                    conditional,
                    import_order.identifiers(item.resource),
                )
                if workers is not None and node.res_type not in types:
                    types.add(node.res_type)
                    workers.first_of_type(Job(len(nodes), node.res_type, node.res_id, node.body))
                nodes.append(node)
                if workers is not None:
                    workers.read(len(nodes))
        return nodes

    def run(self, paths: list[Path], progress: Callable[[int], None] | None = None) -> ImportSummary:
        # the cyclic garbage collector's full passes scan every object the process holds: the
        # loaded modules and model classes, then the resources read. Frozen, they are left out
        # (measured on the Synthea sample: ~0.5 s of collections a worker otherwise), and forked
        # workers do not copy their pages by touching them
        gc.freeze()
        try:
            return self._run(paths, progress)
        finally:
            gc.unfreeze()

    def _run(self, paths: list[Path], progress: Callable[[int], None] | None) -> ImportSummary:
        summary = ImportSummary()
        outcome: dict[int, str] = {}  # node -> its response status (or "error: ...")
        with ExitStack() as stack:
            on_demand = None
            if self.workers > 1 and self.worker_pipeline is not None and import_workers.available():
                on_demand = _WorkersOnDemand(
                    lambda: stack.enter_context(import_workers.Workers(self.workers, self._writer, self._warm)), self.batch_size
                )
            nodes = self.read(paths, summary, on_demand)
            summary.total = len(nodes)
            plan = import_order.plan(nodes)
            gc.freeze()
            batches = list(import_order.batches(plan, nodes, self.batch_size))
            workers = on_demand.workers if on_demand is not None else None
            if workers is not None and len(batches) > 1:
                after = import_order.prerequisites(plan, nodes, batches, self.serial_types)
                batches, after = import_order.spread_start(plan, nodes, batches, after, self.workers, self.serial_types)
                outcome.update(workers.write([_jobs(batch, nodes, plan.placeholders) for batch in batches], after, progress))
            else:
                for batch in batches:
                    self._write(_jobs(batch, nodes, plan.placeholders), outcome)
                    if progress:
                        progress(len(batch))
        second = set(plan.second_pass)
        first = {i: outcome[i] for i in plan.second_pass}
        if plan.second_pass:  # cycle members again, as read: the server resolves their conditional references now
            order = [i for i in plan.order if i in second]
            for start in range(0, len(order), self.batch_size):
                self._write(_jobs(order[start : start + self.batch_size], nodes, {}), outcome)
        for i, node in enumerate(nodes):
            status = outcome[i]
            if status.startswith("201") or (i in first and first[i].startswith("201") and status.startswith("200")):
                summary.created[node.res_type] += 1
            elif status.startswith("200"):
                summary.existing[node.res_type] += 1
            else:
                summary.errors.append(f"{node.where}: {status}{self._failed_targets(i, plan, nodes, outcome)}")
        summary.warnings += self._unresolved(nodes, outcome)
        return summary

    @contextmanager
    def _writer(self) -> Iterator[import_workers.WriteBatch]:
        """In a worker process: writes one transaction through a pipeline of the worker's own."""
        assert self.worker_pipeline is not None
        with self.worker_pipeline() as pipeline:
            importer = Importer(pipeline, self.base, self.batch_size)

            def write(jobs: list[Job]) -> dict[int, str]:
                outcome: dict[int, str] = {}
                importer._write(jobs, outcome)
                return outcome

            yield write

    def _warm(self, job: Job) -> None:
        """In the zygote: build the type's models, its datatypes' and its index plan, then
        validate and index the resource (writing nothing): what its first write would build."""
        warm.warm_up((job.res_type,))
        self.pipeline.services.resources.prepare_update(job.res_type, job.res_id, jsonio.loads(job.body), index=True)

    def _write(self, jobs: list[Job], outcome: dict[int, str]) -> None:
        entries = []
        for job in jobs:
            resource = jsonio.loads(job.body)
            if job.targets:
                _rewrite(resource, job.targets)
            entries.append({"resource": resource, "request": {"method": "PUT", "url": f"{job.res_type}/{job.res_id}"}})
        try:
            response = self._bundle("transaction", entries)
        except FhirError:
            # one bad resource: redo the batch entry by entry to keep the good ones and name the bad ones
            response = self._bundle("batch", entries)
        for job, entry in zip(jobs, response["entry"], strict=True):  # one response entry per request entry
            status = entry["response"]["status"]
            if status.startswith(("200", "201")):
                outcome[job.node] = status
            else:
                issues = entry["response"].get("outcome", {}).get("issue", [{}])
                outcome[job.node] = f"{status}: " + "; ".join(x.get("diagnostics", "") for x in issues)[:300]

    @staticmethod
    def _failed_targets(i: int, plan: import_order.Plan, nodes: list[Node], outcome: dict[int, str]) -> str:
        failed = [nodes[j].where for j in sorted(plan.hard[i]) if not outcome[j].startswith(("200", "201"))]
        return f" (it refers to {', '.join(failed[:3])}, which failed to load)" if failed else ""

    def _unresolved(self, nodes: list[Node], outcome: dict[int, str]) -> list[str]:
        """Literal references of written resources whose target was neither written by this
        import nor is stored (one search by ``_id`` per type and 100 ids)."""
        loaded: set[tuple[str, str]] = set()
        failed: dict[tuple[str, str], str] = {}
        for i, node in enumerate(nodes):
            if outcome[i].startswith(("200", "201")):
                loaded.add(node.key)
            else:
                failed.setdefault(node.key, node.where)
        outside: dict[str, set[str]] = {}
        for i, node in enumerate(nodes):
            if outcome[i].startswith(("200", "201")):
                for res_type, res_id in node.literal:
                    if (res_type, res_id) not in loaded:
                        outside.setdefault(res_type, set()).add(res_id)
        stored = {(t, res_id) for t, ids in outside.items() for res_id in self._stored(t, sorted(ids))}
        warnings = []
        for i, node in enumerate(nodes):
            if not outcome[i].startswith(("200", "201")):
                continue
            for key in dict.fromkeys(node.literal):
                if key in loaded or key in stored:
                    continue
                why = f"failed to load ({failed[key]})" if key in failed else "is neither in the import nor stored"
                warnings.append(f"{node.where}: {node.res_type}/{node.res_id} refers to {key[0]}/{key[1]}, which {why}")
        return warnings

    def _stored(self, res_type: str, ids: list[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(ids), 100):
            chunk = ids[start : start + 100]
            params = [("_id", ",".join(chunk)), ("_count", str(len(chunk))), ("_elements", "id")]
            try:
                bundle = self._handle(Interaction("search-type", self.base, OPEN, res_type, params=params))
            except FhirError:  # a type the server does not search: its references stay unresolved (warnings)
                continue
            found.update(e["resource"]["id"] for e in bundle.get("entry") or [] if isinstance(e.get("resource"), dict))
        return found


def _jobs(batch: list[int], nodes: list[Node], placeholders: dict[int, dict[str, int]]) -> list[Job]:
    """The jobs writing ``batch`` (node indexes), with the stand-ins of ``placeholders``."""
    jobs = []
    for i in batch:
        node = nodes[i]
        stand_ins = placeholders.get(i)
        targets = {ref: f"{nodes[j].res_type}/{nodes[j].res_id}" for ref, j in stand_ins.items()} if stand_ins else None
        jobs.append(Job(i, node.res_type, node.res_id, node.body, targets))
    return jobs


def export_ndjson(db: Any, out_dir: Path, types: list[str] | None, since_us: int | None) -> Counter:
    """Current resources as ``<Type>.ndjson`` files of stored bytes (``fhir-server export``)."""
    import sqlalchemy as sa

    from fhir_server.storage.tables import resources

    out_dir.mkdir(parents=True, exist_ok=True)
    counts: Counter = Counter()
    files: dict[str, Any] = {}
    r = resources.c
    where = [r.deleted == sa.false()]
    if types:
        where.append(r.res_type.in_(types))
    if since_us is not None:
        where.append(r.updated_us >= since_us)
    with ExitStack() as opened, db.read() as conn:  # the files are closed after the read ends
        result = conn.execution_options(yield_per=1000).execute(sa.select(r.res_type, r.body).where(*where).order_by(r.pk))
        for res_type, body in result:
            handle = files.get(res_type)
            if handle is None:
                handle = files[res_type] = opened.enter_context(open(out_dir / f"{res_type}.ndjson", "wb"))
            handle.write(bytes(body) + b"\n")
            counts[res_type] += 1
    return counts
