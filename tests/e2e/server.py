"""Run the real ``fhir-server serve`` in a subprocess for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    def __init__(self, database_url: str, workers: int = 1, log: Path | None = None, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}/fhir"
        self.log = log
        cmd = [sys.executable, "-m", "fhir_server.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port),
               "--workers", str(workers), "--database-url", database_url]
        out = open(log, "wb") if log else subprocess.DEVNULL
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                     env={**os.environ, "FHIR_AUTH": "none", **(env or {})})

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                detail = self.log.read_text() if self.log else ""
                raise RuntimeError(f"server exited with {self.proc.returncode}: {detail[-2000:]}")
            try:
                if httpx.get(f"{self.base}/metadata", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("server did not become ready")

    def kill(self) -> None:
        """SIGKILL the whole process group: no shutdown hooks, no flushing."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> "ServerProcess":
        self.wait_ready()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
