"""The sync worker in a process of its own, started by the server (docs/satusehat.md).

Run inside the API process, the worker's database reads, JSON and HTTP work shared the event loop
(and the GIL) that serves requests: local write throughput fell by 60-68 % while it drained a
backlog. A child process runs beside the server (on another core), at a lower CPU priority
(``FHIR_SATUSEHAT_NICE``), with its own connections, event loop and group commit; what it shares
with the server is the database, where its writes are a few short transactions per chunk of items.

The settings reach the child on its stdin (no secret on a command line or in the environment of
other processes); the child stops when its stdin closes (the server stopped, or died) and on
SIGTERM/SIGINT. Correctness does not depend on the child ending cleanly: its work is claimed
through the database (a killed child's partitions are taken over once their lease runs out).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from typing import IO

from fhir_server.config import Settings

log = logging.getLogger("fhir_server.satusehat")


class SyncProcess:
    """The server's handle on its sync child process."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc

    @property
    def pid(self) -> int:
        return self.proc.pid

    @classmethod
    def start(cls, settings: Settings) -> SyncProcess:
        values = {**dataclasses.asdict(settings), "database_url": settings.effective_database_url}
        proc = subprocess.Popen([sys.executable, "-m", "fhir_server.satusehat.process"], stdin=subprocess.PIPE)
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(values).encode() + b"\n")
        proc.stdin.flush()
        log.info("satusehat: sync worker process %d started", proc.pid)
        return cls(proc)

    async def stop(self, timeout: float = 15.0) -> None:
        await asyncio.to_thread(self._stop, timeout)

    def _stop(self, timeout: float) -> None:
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()  # the child's signal to stop
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def main() -> None:
    settings = Settings(**json.loads(sys.stdin.buffer.readline()))
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s [sync %(process)d] %(message)s")
    logging.getLogger("fhir_server").setLevel(logging.INFO)
    if settings.satusehat_nice > 0:
        with contextlib.suppress(OSError):
            os.nice(settings.satusehat_nice)  # request traffic first when the cores are busy
    asyncio.run(_run(settings, sys.stdin.buffer))


async def _run(settings: Settings, control: IO[bytes]) -> None:
    from fhir_server.satusehat.setup import new_worker
    from fhir_server.state import build_state

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def until_closed() -> None:
        control.read()  # returns at end of file: the server closed the pipe, or died
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=until_closed, name="satusehat-control", daemon=True).start()
    state = build_state(settings, background=True)
    worker = new_worker(state)
    try:
        if worker is None:
            return
        worker.start()
        await stop.wait()
        await worker.stop()
    finally:
        state.db.dispose()


if __name__ == "__main__":
    main()
