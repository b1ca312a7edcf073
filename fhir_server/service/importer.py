"""``fhir-server import``: NDJSON files, Bundles, directories and .gz files into the database.

Every resource is written with PUT ``Type/id`` in transactions of ``batch_size``
entries, so a re-run changes nothing: ids come from the resource, else from a
``urn:uuid:`` fullUrl, else from a hash of the content; references to
``urn:uuid:`` fullUrls inside a Bundle are rewritten to those ids. A batch
that fails is retried entry by entry, so one bad resource costs only itself
and is reported with its file and line.
"""

from __future__ import annotations

import asyncio
import gzip
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fhir_server import jsonio
from fhir_server.errors import FhirError
from fhir_server.model.ids import is_valid_id
from fhir_server.service.access import OPEN
from fhir_server.service.pipeline import Interaction, Pipeline

_NAMESPACE = uuid.UUID("2f8f0f4e-5a86-5b0c-8f3e-6b1f3c8e2d71")
_SUFFIXES = (".ndjson", ".json", ".ndjson.gz", ".json.gz")


@dataclass
class Item:
    resource: dict[str, Any]
    where: str  # "file:line" or "file#entry[i]"


@dataclass
class ImportSummary:
    created: Counter = field(default_factory=Counter)
    existing: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    files: int = 0


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
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str) and value in references:
                node[key] = references[value]
            else:
                _rewrite(value, references)
    elif isinstance(node, list):
        for item in node:
            _rewrite(item, references)


def read_items(path: Path, errors: list[str]) -> Iterator[Item]:
    """The resources of one file, with a stable id each; unreadable lines go to ``errors``."""
    raw = _open(path)
    name = path.name.removesuffix(".gz")
    if name.endswith(".ndjson"):
        for number, line in enumerate(raw.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                resource = jsonio.loads(line)
            except jsonio.JsonError as exc:
                errors.append(f"{path}:{number}: {exc}")
                continue
            if not isinstance(resource, dict) or "resourceType" not in resource:
                errors.append(f"{path}:{number}: not a FHIR resource")
                continue
            resource["id"] = _stable_id(resource, None)
            yield Item(resource, f"{path}:{number}")
        return
    try:
        document = jsonio.loads(raw)
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


class Importer:
    """``fhir-server import``: batches of PUTs sent through the pipeline as transaction Bundles by
    the server itself (the open principal), so every check, the change log and the write path
    are the ones every request goes through."""

    def __init__(self, pipeline: Pipeline, base: str = "urn:fhir-server:import", batch_size: int = 500) -> None:
        self.pipeline = pipeline
        self.base = base
        self.batch_size = batch_size

    def _bundle(self, kind: str, entries: list[dict[str, Any]]) -> Any:
        bundle = {"resourceType": "Bundle", "type": kind, "entry": entries}
        answer = asyncio.run(self.pipeline.handle(Interaction("transaction", self.base, OPEN, body=bundle, representation=False)))
        return jsonio.loads(answer.body or b"{}")

    def run(self, paths: list[Path], progress: Callable[[int], None] | None = None) -> ImportSummary:
        summary = ImportSummary()
        batch: list[Item] = []
        for path in find_files(paths):
            summary.files += 1
            if not path.exists():
                summary.errors.append(f"{path}: no such file")
                continue
            for item in read_items(path, summary.errors):
                batch.append(item)
                if len(batch) >= self.batch_size:
                    self._flush(batch, summary, progress)
                    batch = []
        if batch:
            self._flush(batch, summary, progress)
        return summary

    def _flush(self, batch: list[Item], summary: ImportSummary, progress: Callable[[int], None] | None) -> None:
        entries = [
            {"resource": item.resource, "request": {"method": "PUT", "url": f"{item.resource.get('resourceType')}/{item.resource['id']}"}}
            for item in batch
        ]
        try:
            response = self._bundle("transaction", entries)
        except FhirError:
            # one bad resource: redo the batch entry by entry to keep the good ones and name the bad ones
            response = self._bundle("batch", entries)
        for item, entry in zip(batch, response["entry"], strict=True):  # one response entry per request entry
            res_type = str(item.resource.get("resourceType"))
            status = entry["response"]["status"]
            if status.startswith("201"):
                summary.created[res_type] += 1
            elif status.startswith("200"):
                summary.existing[res_type] += 1
            else:
                outcome = entry["response"].get("outcome", {}).get("issue", [{}])
                detail = "; ".join(i.get("diagnostics", "") for i in outcome)[:300]
                summary.errors.append(f"{item.where}: {status}: {detail}")
        if progress:
            progress(len(batch))


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
