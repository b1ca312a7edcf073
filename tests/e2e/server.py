"""Run the real ``fhir-server serve`` in a subprocess for end-to-end tests."""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening_socket_inodes(port: int) -> set[str] | None:
    """The inodes of the sockets listening on ``port`` (Linux ``/proc``); None elsewhere."""
    found: set[str] = set()
    seen_any = False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        seen_any = True
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                found.add(inode)
    return found if seen_any else None


def _holds_socket(pid: int, inodes: set[str]) -> bool:
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            return True
    return False


class ServerProcess:
    """``fhir-server serve`` on a free port. The port is picked before the server binds it, so
    another process may take it meanwhile: the server then fails to start and is started again
    on another port, and readiness counts only once the listening socket is this server's (a
    stranger on the port answering /metadata is not this server)."""

    #: starts on a fresh port after "address already in use"
    PORT_ATTEMPTS = 5

    def __init__(self, database_url: str, workers: int = 1, log: Path | None = None, env: dict[str, str] | None = None) -> None:
        if log is None:  # a test that keeps no folder of its own: removed when this process ends
            fd, name = tempfile.mkstemp(prefix="fhir-server-", suffix=".log")
            os.close(fd)
            log = Path(name)
            atexit.register(log.unlink, missing_ok=True)
        self.log = log
        self._database_url = database_url
        self._workers = workers
        self._env = env
        self._start()

    def _start(self) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}/fhir"
        cmd = [
            sys.executable,
            "-m",
            "fhir_server.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            str(self._workers),
            "--database-url",
            self._database_url,
        ]
        with open(self.log, "wb") as out:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "FHIR_AUTH": "none", **(self._env or {})},
            )

    def _listening(self) -> bool:
        """Whether this server's process holds the socket listening on its port."""
        inodes = _listening_socket_inodes(self.port)
        if inodes is None:  # no /proc: trust the answer on the port
            return True
        return bool(inodes) and _holds_socket(self.proc.pid, inodes)

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        attempts = 1
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                detail = self.log.read_text(errors="replace")
                if "address already in use" in detail.lower() and attempts < self.PORT_ATTEMPTS:
                    attempts += 1  # the port was taken between free_port() and the server's bind
                    self._start()
                    continue
                raise RuntimeError(f"server exited with {self.proc.returncode}: {detail[-2000:]}")
            try:
                if self._listening() and httpx.get(f"{self.base}/metadata", timeout=10).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"server did not become ready within {timeout} s: {self.log.read_text(errors='replace')[-2000:]}")

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

    def __enter__(self) -> ServerProcess:
        self.wait_ready()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
