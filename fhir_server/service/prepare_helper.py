"""A helper process that validates and indexes part of a large transaction Bundle.

A transaction's entries are validated and their index rows extracted before the write lock
(``BundleService._prepare``: ``ResourceService.prepare_update``, a pure function of the resource
and the server's settings). That is ~40 % of a Synthea Bundle's time in one process. When this
machine has a core to spare (one client loading its history, one Bundle at a time), the last
part of the entries goes to this worker process's helper, which runs the same
``prepare_update`` on them, while the server prepares the first part and then starts writing
it. The server waits for the helper's verdicts and rows only when it reaches the first of its
entries, so the helper's work also overlaps the writing.

Nothing is decided differently: the helper is given each resource as the server holds it (its
JSON, decimals parsed exactly as the server parsed them) and the same settings; its verdicts
come back as the same issues and errors. Whatever goes wrong with the helper (not started yet,
busy with another Bundle, ended, too slow to answer) makes the server prepare those entries
itself, as it always did.

The helper is ``python -m fhir_server.service.prepare_helper``, its requests and answers
pickles in length-prefixed frames on its stdin and stdout (a child of a uvicorn worker: not a
``multiprocessing`` child, which daemonic workers may not have).
"""

from __future__ import annotations

import gc
import os
import pickle
import select
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

import orjson

from fhir_server import jsonio
from fhir_server.errors import FhirError

#: fewest entries worth sending (the round trip and the serialising cost ~0.5 ms)
MIN_JOBS = 16
#: the helper's share of the entries: it parses what it is sent, and the server goes on to
#: write its own part meanwhile
SHARE = 0.45
#: spare CPU (idle, or the helper's own) since the last Bundle needed to send it work: a machine
#: whose cores are all busy (several clients) gains nothing and pays the transfer
MIN_SPARE = 0.3
#: seconds to wait for an answer before giving up on the helper (it is then stopped)
ANSWER_TIMEOUT = 30.0
_FRAME = struct.Struct(">Q")

#: (res_type, res_id, the resource's JSON, exact decimals, extract index rows)
Job = tuple[str, str, bytes, bool, bool]
#: (warnings, (status, issues, headers) of the error or None, index rows or None)
Answer = tuple[list[Any], tuple[int, list[Any], dict[str, str]] | None, Any]


def _write_frame(out: IO[bytes], payload: bytes) -> None:
    out.write(_FRAME.pack(len(payload)) + payload)
    out.flush()


def _read_exactly(stream: IO[bytes], size: int) -> bytes:
    chunks: list[bytes] = []
    while size:
        chunk = stream.read(size)
        if not chunk:
            raise EOFError("the prepare helper ended")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _read_frame(stream: IO[bytes]) -> bytes:
    (size,) = _FRAME.unpack(_read_exactly(stream, _FRAME.size))
    return _read_exactly(stream, size)


def encode(resource: dict[str, Any]) -> tuple[bytes, bool]:
    """The resource's JSON, and whether it holds exact decimals (then read back exactly too)."""
    try:
        return orjson.dumps(resource), False
    except TypeError:  # Decimals, integers beyond 64 bits: the exact path
        return jsonio.dumps(resource), True


def decode(text: bytes, exact: bool) -> Any:
    """A resource as :func:`encode` wrote it, with the same Python values as it was given."""
    return jsonio.exact(text) if exact else orjson.loads(text)


def prepare_jobs(prepare: Callable[..., Any], jobs: list[Job]) -> list[Answer]:
    """What ``prepare`` (``ResourceService.prepare_update``) says of each job (the helper's work)."""
    answers: list[Answer] = []
    for res_type, res_id, text, exact, index in jobs:
        prepared = prepare(res_type, res_id, decode(text, exact), index=index)
        error = prepared.error
        answers.append((prepared.warnings, None if error is None else (error.status, error.issues, error.headers), prepared.rows))
    return answers


class Pending:
    """The helper's answers to one request, read on first use (by whichever thread needs them)."""

    def __init__(self, helper: PrepareHelper, jobs: list[Job]) -> None:
        self._helper = helper
        self._jobs = jobs
        self._answers: list[Answer] | None = None
        self._lock = threading.Lock()

    def answer(self, k: int) -> Answer | None:
        """The k-th job's answer; None when the helper could not give it (prepare it here)."""
        with self._lock:
            if self._answers is None:
                self._answers = self._helper.collect()
            return self._answers[k] if self._answers else None


@dataclass
class _Usage:
    at: float
    idle: float
    helper: float


class PrepareHelper:
    """This process's helper (started by the app in server worker processes)."""

    def __init__(self, r4b_model_check: bool, region_codes: str) -> None:
        self._settings = {"r4b_model_check": r4b_model_check, "region_codes": region_codes}
        self._process: subprocess.Popen[bytes] | None = None
        self._ready = False
        self._busy = False
        self._lock = threading.Lock()
        self._usage: _Usage | None = None

    def start(self) -> None:
        """Start the helper; it takes work once it has warmed up (a few seconds)."""
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self._process = subprocess.Popen(
            [sys.executable, "-m", "fhir_server.service.prepare_helper"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
        )
        assert self._process.stdin is not None
        _write_frame(self._process.stdin, pickle.dumps(self._settings))

    def close(self) -> None:
        process, self._process, self._ready = self._process, None, False
        if process is None:
            return
        try:
            if process.stdin is not None:
                process.stdin.close()  # the helper ends at the end of its input
            process.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()

    def _alive_and_ready(self) -> bool:
        process = self._process
        if process is None or process.poll() is not None:
            return False
        if not self._ready:
            assert process.stdout is not None
            if not select.select([process.stdout], [], [], 0)[0]:
                return False  # still warming up
            try:
                self._ready = _read_frame(process.stdout) == b"ready"
            except (EOFError, OSError):
                return False
        return self._ready

    def share(self, jobs: int) -> int:
        """How many of a Bundle's ``jobs`` entries to send now (0: none)."""
        if jobs < MIN_JOBS or self._busy or not self._spare() or not self._alive_and_ready():
            return 0
        return int(jobs * SHARE)

    def submit(self, jobs: list[Job]) -> Pending | None:
        """Send ``jobs``; None when the helper cannot take them (prepare them here)."""
        with self._lock:
            process = self._process
            if self._busy or process is None or process.stdin is None:
                return None
            try:
                _write_frame(process.stdin, pickle.dumps(jobs, protocol=pickle.HIGHEST_PROTOCOL))
            except OSError:
                self._stop()
                return None
            self._busy = True
        return Pending(self, jobs)

    def collect(self) -> list[Answer] | None:
        """The answers to the request sent last (None: the helper failed; it is stopped)."""
        process = self._process
        try:
            if process is None or process.stdout is None:
                return None
            if not select.select([process.stdout], [], [], ANSWER_TIMEOUT)[0]:
                raise TimeoutError("the prepare helper did not answer")
            frame = _read_frame(process.stdout)
            collecting = gc.isenabled()
            gc.disable()  # ~15 new containers a resource: collections midway made the load 3x slower
            try:
                answers: list[Answer] = pickle.loads(frame)
            finally:
                if collecting:
                    gc.enable()
            return answers
        except (EOFError, OSError, TimeoutError, pickle.UnpicklingError):
            self._stop()
            return None
        finally:
            self._busy = False

    def _stop(self) -> None:
        process, self._process, self._ready = self._process, None, False
        if process is not None:
            process.kill()
            process.wait()

    def _spare(self) -> bool:
        """Whether the machine had at least ``MIN_SPARE`` of a core idle (or working for the
        helper, which would otherwise be idle) since the last look (Linux; elsewhere: yes)."""
        try:
            with open("/proc/stat", "rb") as f:
                fields = f.readline().split()
            idle = (int(fields[4]) + int(fields[5])) / os.sysconf("SC_CLK_TCK")  # idle + iowait
            helper = 0.0
            if self._process is not None:
                with open(f"/proc/{self._process.pid}/stat", "rb") as f:
                    stat = f.read().rsplit(b")", 1)[1].split()
                helper = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
        except (OSError, IndexError, ValueError):
            return True
        now = time.monotonic()
        last, self._usage = self._usage, _Usage(now, idle, helper)
        if last is None or now - last.at <= 0:
            return True
        return (idle - last.idle + helper - last.helper) / (now - last.at) >= MIN_SPARE


def error_of(answer: Answer) -> FhirError | None:
    failure = answer[1]
    return None if failure is None else FhirError(failure[0], failure[1], headers=failure[2])


def main() -> None:
    """The helper: settings, then requests until its input ends."""
    from fhir_server.service.indexing import index_rows
    from fhir_server.service.resources import ResourceService
    from fhir_server.service.warm import warm_up

    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything printed goes to stderr, never into the answers
    source = sys.stdin.buffer
    try:
        settings = pickle.loads(_read_frame(source))
    except EOFError:
        return
    service = ResourceService(None, None, prepare_index=index_rows, **settings)  # type: ignore[arg-type]  # no database: prepare only
    warm_up()
    gc.collect()
    gc.freeze()  # what the warm-up built is never garbage: left out of every collection
    _write_frame(out, b"ready")
    while True:
        try:
            jobs = pickle.loads(_read_frame(source))
        except EOFError:
            return
        _write_frame(out, pickle.dumps(prepare_jobs(service.prepare_update, jobs), protocol=pickle.HIGHEST_PROTOCOL))


if __name__ == "__main__":
    main()
