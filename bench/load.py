"""Bounded loopback load with wrk (Debian package ``wrk``): fixed duration and connections.

Each scenario is a small Lua script; its ``done`` hook prints one JSON line
with the request count, errors and latency percentiles.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

DONE_HOOK = r"""
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
               + summary.errors.status + summary.errors.timeout
  io.write(string.format('BENCH {"requests": %d, "seconds": %f, "errors": %d, "non2xx": %d, '
    .. '"p50_ms": %f, "p95_ms": %f, "p99_ms": %f}\n',
    summary.requests, summary.duration / 1e6, errors, summary.errors.status,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000))
end
"""


@dataclass
class Result:
    scenario: str
    target: str
    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p95_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def require_wrk() -> str:
    path = shutil.which("wrk")
    if not path:
        raise SystemExit("the benchmark needs wrk: apt-get install wrk")
    return path


def _lua_list(values: list[str]) -> str:
    return "{" + ",".join(json.dumps(v) for v in values) + "}"


def get_paths_script(paths: list[str]) -> str:
    return (
        f"local paths = {_lua_list(paths)}\n"
        "local i = 0\n"
        "request = function()\n  i = i + 1\n  return wrk.format('GET', paths[(i % #paths) + 1])\nend\n"
        + DONE_HOOK
    )


def post_script(path: str, bodies: list[str], content_type: str = "application/fhir+json") -> str:
    return (
        f"local bodies = {_lua_list(bodies)}\n"
        "local i = 0\n"
        f"wrk.headers['Content-Type'] = '{content_type}'\n"
        "request = function()\n  i = i + 1\n"
        f"  return wrk.format('POST', '{path}', nil, bodies[(i % #bodies) + 1])\nend\n"
        + DONE_HOOK
    )


def run(scenario: str, target: str, base: str, script: str, *, duration: int, connections: int, threads: int = 1) -> Result:
    wrk = require_wrk()
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
        lua = f.name
    try:
        proc = subprocess.run(
            [wrk, f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--timeout", "10s", "-s", lua, base],
            capture_output=True, text=True, timeout=duration + 60,
        )
    finally:
        Path(lua).unlink(missing_ok=True)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no result for {scenario}: {proc.stdout}\n{proc.stderr}")
    data = json.loads(line[6:])
    return Result(scenario, target, data["requests"], data["seconds"], data["errors"], data["p50_ms"], data["p95_ms"], data["p99_ms"])
