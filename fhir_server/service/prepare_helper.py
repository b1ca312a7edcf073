"""A helper process that validates and indexes part of a large transaction Bundle.

A transaction's entries are validated and their index rows extracted before the write lock
(``BundleService._prepare``: ``ResourceService.prepare_updates``, a pure function of the
resources and the server's settings): ~60 % of a Synthea Bundle's time in one process. One
client loading its history sends one Bundle at a time, so a second core sits idle. When the
machine has a core to spare, the last half of a Bundle's entries goes to this server worker's
helper, which runs the same ``prepare_updates`` on them while the server prepares the first
half and starts writing it. The server reads the helper's verdicts and rows only when it reaches
the first of its entries, so the helper's work overlaps the writing too.

Nothing is decided differently: the helper is given each resource as the server holds it (its
JSON after the references were rewritten, decimals read back exactly as the server parsed them)
and the same settings; its verdicts come back as the same warnings, errors and rows. Whatever
goes wrong with the helper (busy with another Bundle, ended, too slow to answer) makes the
server prepare those entries itself, as it always did. The helper only computes: it opens no
database, and every entry was authorized before any was sent.

The helper is forked by its server worker once the worker has built its models
(``warm.warm_up``) and before it starts its background threads, so it starts warm and shares
their memory. Requests and answers are pickles on two ``multiprocessing`` pipes (as the
import's workers get theirs, ``import_workers.py``). It ends
when its input does: when the server closes it, or when the server process dies. What else it
inherits it leaves alone: it never uses the server's database connections, sockets or lock files
(SQLite's ``flock`` is taken and released by the server on its own descriptor, so a copy held
here changes nothing while the server lives, and is gone as soon as this process ends after it),
and it collects none of the server's objects (``gc.freeze``), so no finalizer of theirs runs here.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import pickle
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from typing import Any

import orjson

from fhir_server import jsonio
from fhir_server.errors import FhirError, Issue
from fhir_server.service.indexing import index_rows
from fhir_server.service.resources import ResourceService

log = logging.getLogger(__name__)

#: fewest entries worth sharing (the round trip and the serialising cost ~0.5 ms)
MIN_JOBS = 16
#: the helper's share of the entries (0.35, 0.45 and 0.65 were slower than half and 0.55 the same,
#: measured on the Synthea ingest: the server also writes every entry)
SHARE = 0.5
#: spare CPU since the last Bundle (idle, or the helper's own work) needed to share one: on a
#: machine whose cores are all busy (several clients) sharing gains nothing and pays the transfer
MIN_SPARE = 0.3
#: seconds to wait for an answer before giving up on the helper (it is then stopped)
ANSWER_TIMEOUT = 30.0

#: (resource type, id, the resource's JSON, whether it holds exact decimals)
Job = tuple[str, str, bytes, bool]
#: (warnings, (status, issues, headers) of the error or None, index rows or None)
Answer = tuple[list[Issue], tuple[int, list[Issue], dict[str, str]] | None, Any]


def encode(resource: dict[str, Any]) -> tuple[bytes, bool]:
    """The resource's JSON, and whether it holds exact decimals (then read back exactly too)."""
    try:
        return orjson.dumps(resource), False
    except TypeError:  # ExactDecimals, integers beyond 64 bits
        return jsonio.dumps(resource), True


def decode(text: bytes, exact: bool) -> Any:
    """A resource as :func:`encode` wrote it, with the same Python values as it was given."""
    return jsonio.loads_exact(text) if exact else orjson.loads(text)


def answers_of(prepare_updates: Any, jobs: Sequence[Job], index: bool) -> list[Answer]:
    """What ``prepare_updates`` (``ResourceService.prepare_updates``) says of each job: the helper's work."""
    prepared = prepare_updates([(res_type, res_id, decode(text, exact), None) for res_type, res_id, text, exact in jobs], index=index)
    return [(p.warnings, None if p.error is None else (p.error.status, p.error.issues, p.error.headers), p.rows) for p in prepared]


def error_of(answer: Answer) -> FhirError | None:
    failure = answer[1]
    return None if failure is None else FhirError(failure[0], failure[1], headers=failure[2])


class Pending:
    """The helper's answers to one request, read on first use (by whichever thread needs them)."""

    def __init__(self, helper: PrepareHelper) -> None:
        self._helper = helper
        self._answers: list[Answer] | None = None
        self._read = False
        self._lock = threading.Lock()

    def answer(self, k: int) -> Answer | None:
        """The k-th job's answer; None when the helper could not give it (prepare it here)."""
        with self._lock:
            if not self._read:
                self._answers, self._read = self._helper.collect(), True
            return self._answers[k] if self._answers is not None else None


@dataclass
class _Usage:
    at: float
    idle: float
    helper: float


class PrepareHelper:
    """A server worker process's helper (app.py gives one to each server worker)."""

    def __init__(self, r4b_model_check: bool, region_codes: str) -> None:
        self._settings = {"r4b_model_check": r4b_model_check, "region_codes": region_codes}
        self._pid: int | None = None
        self._to: Connection | None = None
        self._from: Connection | None = None
        self._busy = False
        self._lock = threading.Lock()
        self._usage: _Usage | None = None

    def start(self) -> None:
        """Fork the helper. Forked once the worker has built its models (``warm.warm_up``), it
        starts with them built and shares their memory until either writes over it."""
        service = ResourceService(None, prepare_index=index_rows, **self._settings)  # type: ignore[arg-type]  # no database: prepare only
        to_read, to_write = Pipe(duplex=False)
        from_read, from_write = Pipe(duplex=False)
        pid = os.fork()
        if pid == 0:  # the helper: it never returns
            # what it inherited is never collected here: no finalizer of the server's objects
            # (a database connection's, say) runs in this process
            gc.freeze()
            code = 1
            try:
                to_write.close()
                from_read.close()
                _serve(to_read, from_write, service)
                code = 0
            except Exception:
                log.exception("the prepare helper failed")
            finally:
                os._exit(code)  # nothing of the server's (its sockets, its connections) is closed or flushed here
        to_read.close()
        from_write.close()
        self._pid, self._to, self._from = pid, to_write, from_read

    def close(self) -> None:
        """End the helper (at the end of its input) and wait for it."""
        pid, self._pid = self._pid, None
        self._close_pipes()
        if pid is None:
            return
        deadline = time.monotonic() + 5
        while not _reaped(pid):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                _reaped(pid, wait=True)
                return
            time.sleep(0.01)

    def running(self) -> bool:
        """Whether the helper runs (never waits)."""
        pid = self._pid
        if pid is None:
            return False
        if _reaped(pid):
            self._pid = None
            self._stop("ended")
            return False
        return True

    def share(self, jobs: int) -> int:
        """How many of a Bundle's ``jobs`` entries to send now (0: none)."""
        if jobs < MIN_JOBS or self._busy or not self._spare() or not self.running():
            return 0
        return int(jobs * SHARE)

    def submit(self, index: bool, jobs: list[Job]) -> Pending | None:
        """Send ``jobs`` (``index``: their rows extracted too); None when the helper cannot take
        them (prepare them here)."""
        with self._lock:
            if self._busy or self._to is None or not jobs:
                return None
            try:
                self._to.send_bytes(pickle.dumps((index, jobs), protocol=pickle.HIGHEST_PROTOCOL))
            except OSError:
                self._stop("could not be sent its work")
                return None
            self._busy = True
        return Pending(self)

    def collect(self) -> list[Answer] | None:
        """The answers to the request sent last (None: the helper failed; it is stopped)."""
        answers_from = self._from
        try:
            if answers_from is None:
                return None
            if not answers_from.poll(ANSWER_TIMEOUT):
                raise TimeoutError("did not answer in time")
            frame = answers_from.recv_bytes()
            collecting = gc.isenabled()
            gc.disable()  # ~15 new containers a resource: collections midway made reading them 3x slower
            try:
                answers: list[Answer] = pickle.loads(frame)
            finally:
                if collecting:
                    gc.enable()
            return answers
        except (EOFError, OSError, TimeoutError, pickle.UnpicklingError) as exc:
            self._stop(f"failed: {exc}")
            return None
        finally:
            self._busy = False

    def _stop(self, why: str) -> None:
        """Stop a helper that failed; this process prepares everything itself from now on."""
        log.warning("the prepare helper %s; this process prepares every Bundle itself from now on", why)
        pid, self._pid = self._pid, None
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            _reaped(pid, wait=True)
        self._close_pipes()

    def _close_pipes(self) -> None:
        for pipe in (self._to, self._from):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        self._to = self._from = None

    def _spare(self) -> bool:
        """Whether the machine had at least ``MIN_SPARE`` of a core idle (or working for the
        helper, which would otherwise be idle) since the last look (Linux; elsewhere: yes)."""
        usage = machine_usage(self._pid)
        if usage is None:
            return True
        now = time.monotonic()
        last, self._usage = self._usage, _Usage(now, *usage)
        if last is None or now - last.at <= 0:
            return True
        return (usage[0] - last.idle + usage[1] - last.helper) / (now - last.at) >= MIN_SPARE


def _reaped(pid: int, *, wait: bool = False) -> bool:
    """Whether the helper ``pid`` has ended (and is reaped now); ``wait``: until it has. Reaped
    already (by another thread of this process noticing first) counts as ended."""
    try:
        return os.waitpid(pid, 0 if wait else os.WNOHANG) != (0, 0)
    except ChildProcessError:
        return True


def machine_usage(helper_pid: int | None) -> tuple[float, float] | None:
    """Seconds the machine's cores were idle (or waiting for I/O) since boot, and seconds the
    helper ran; None where ``/proc`` does not tell."""
    try:
        with open("/proc/stat", "rb") as f:
            fields = f.readline().split()
        ticks = os.sysconf("SC_CLK_TCK")
        idle = (int(fields[4]) + int(fields[5])) / ticks  # idle + iowait
        helper = 0.0
        if helper_pid is not None:
            with open(f"/proc/{helper_pid}/stat", "rb") as f:
                stat = f.read().rsplit(b")", 1)[1].split()
            helper = (int(stat[11]) + int(stat[12])) / ticks  # utime + stime
    except (OSError, IndexError, ValueError):
        return None
    return idle, helper


def _serve(requests: Connection, answers: Connection, service: Any) -> None:
    """The helper's loop: requests until its input ends."""
    signal.set_wakeup_fd(-1)  # the server's event loop is not running here
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C stops its server, whose exit ends this
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    while True:
        try:
            index, jobs = pickle.loads(requests.recv_bytes())
        except EOFError:
            return
        answers.send_bytes(pickle.dumps(answers_of(service.prepare_updates, jobs, index), protocol=pickle.HIGHEST_PROTOCOL))
