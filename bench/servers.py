"""Start and stop the servers under test as subprocesses on loopback ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


@contextmanager
def running(cmd: list[str], ready_url: str, env: dict[str, str] | None = None, log: Path | None = None) -> Iterator[None]:
    out = open(log, "wb") if log else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_ready(ready_url)
        yield
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if log:
            out.close()


def our_server(port: int, database_url: str, workers: int) -> list[str]:
    return [
        sys.executable, "-m", "fhir_server.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
        "--workers", str(workers), "--database-url", database_url,
    ]


def trivial_server(port: int, workers: int) -> list[str]:
    return [
        sys.executable, "-m", "uvicorn", "bench.trivial_app:app", "--host", "127.0.0.1", "--port", str(port),
        "--workers", str(workers), "--loop", "uvloop", "--http", "httptools", "--log-level", "warning", "--no-access-log",
    ]
