"""Start and stop the servers under test as subprocesses on loopback ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, timeout: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


@contextmanager
def running(
    cmd: list[str],
    ready_url: str,
    env: dict[str, str] | None = None,
    log: Path | None = None,
    cwd: Path | None = None,
    timeout: float = 120.0,
) -> Iterator[subprocess.Popen]:
    with ExitStack() as files:  # the log closes after the server has stopped (or if it cannot start)
        out = files.enter_context(open(log, "wb")) if log else subprocess.DEVNULL
        proc = subprocess.Popen(
            cmd, env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=cwd
        )
        try:
            try:
                wait_ready(ready_url, timeout, proc)
            except RuntimeError as e:
                tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
                raise RuntimeError(f"{e}\n{tail}") from None
            yield proc  # the leader of its own process group (start_new_session)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def our_server(port: int, database_url: str, workers: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "fhir_server.cli",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--database-url",
        database_url,
    ]


def trivial_server(port: int, workers: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "bench.trivial_app:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--log-level",
        "warning",
        "--no-access-log",
    ]


# -- the Python peer: sekmet-fhir from PyPI, in its own venv (never in the project's) --------------

SEKMET_PACKAGE = "sekmet-fhir"


def default_peer_venv() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "fhir-server-bench" / "sekmet-venv"


def ensure_sekmet(venv: Path) -> Path:
    """The venv's python with sekmet-fhir installed (created with ``python3 -m venv`` + pip on first use)."""
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import sekmet.main"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    print(f"installing {SEKMET_PACKAGE} into {venv} (separate venv) ...", file=sys.stderr, flush=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    base_python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else "python3"
    for cmd in ([base_python, "-m", "venv", str(venv)], [str(python), "-m", "pip", "install", "-q", SEKMET_PACKAGE]):
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}): {(p.stderr or p.stdout)[-1500:]}")
    p = subprocess.run(probe, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"sekmet installed but does not import: {p.stderr[-1500:]}")
    return python


def sekmet_version(python: Path) -> str:
    p = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('sekmet-fhir'))"], capture_output=True, text=True
    )
    return p.stdout.strip() or "?"


def sekmet_server(python: Path, port: int, workers: int, workdir: Path) -> tuple[list[str], dict[str, str]]:
    """sekmet's own ``sekmet serve`` runs one uvicorn process on ``sekmet.main:app_factory``; to give it the
    same worker count as ours we call uvicorn on that factory directly. Its settings come from a YAML file:
    SQLite database in ``workdir``, inbound traffic log off (its docs: "off for heavy load runs"),
    workflow simulator off, no auth."""
    config = workdir / "settings.yaml"
    config.write_text(
        f"base_url: http://127.0.0.1:{port}/fhir\n"
        f"host: 127.0.0.1\nport: {port}\n"
        f"data_dir: {workdir / 'data'}\n"
        f"db_path: {workdir / 'sekmet.db'}\n"
        "log_inbound: false\n"
        "simulator:\n  enabled: false\n"
    )
    (workdir / "data").mkdir(exist_ok=True)
    cmd = [
        str(python),
        "-m",
        "uvicorn",
        "sekmet.main:app_factory",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    return cmd, {"SEKMET_CONFIG": str(config)}
