"""Bounded loopback load with wrk (Debian package ``wrk``): fixed duration and connections.

Each scenario is a small Lua script; its ``done`` hook prints one JSON line
with the request count, errors and latency percentiles.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

DONE_HOOK = r"""
threads = {}
setup = function(thread)
  table.insert(threads, thread)
end
statuses = {}
sample = nil
response = function(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if status >= 400 and sample == nil then
    sample = tostring(status) .. " " .. string.sub(body or "", 1, 400)
  end
end
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
               + summary.errors.status + summary.errors.timeout
  local counts = {}
  local first = nil
  for _, t in ipairs(threads) do
    local st = t:get("statuses") or {}
    for code, n in pairs(st) do counts[code] = (counts[code] or 0) + n end
    first = first or t:get("sample")
  end
  local parts = {}
  for code, n in pairs(counts) do table.insert(parts, string.format('"%d": %d', code, n)) end
  io.write(string.format('BENCH {"requests": %d, "seconds": %f, "errors": %d, "non2xx": %d, "timeouts": %d, '
    .. '"p50_ms": %f, "p95_ms": %f, "p99_ms": %f, "statuses": {%s}}\n',
    summary.requests, summary.duration / 1e6, errors, summary.errors.status, summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    table.concat(parts, ", ")))
  if first then
    io.write("BENCHSAMPLE " .. string.gsub(first, "\n", " ") .. "\n")
  end
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
    statuses: dict[str, int] = field(default_factory=dict)
    sample_error: str = ""
    #: resources per request (transaction ingest: entries per Bundle), for ``resources_per_s``
    per_request: int = 1
    connections: int = 0
    note: str = ""

    @property
    def resources_per_s(self) -> float:
        return self.rps * self.per_request

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def require_wrk() -> str:
    path = shutil.which("wrk")
    if not path:
        raise SystemExit("the benchmark needs wrk: apt-get install wrk")
    return path


def _lua_list(values: list[str]) -> str:
    return "{" + ",".join(json.dumps(v, ensure_ascii=False) for v in values) + "}"


def get_paths_script(paths: list[str]) -> str:
    return (
        f"local paths = {_lua_list(paths)}\n"
        "local i = 0\n"
        "request = function()\n  i = i + 1\n  return wrk.format('GET', paths[(i % #paths) + 1])\nend\n" + DONE_HOOK
    )


def post_script(path: str, bodies: list[str], content_type: str = "application/fhir+json") -> str:
    return (
        f"local bodies = {_lua_list(bodies)}\n"
        "local i = 0\n"
        f"wrk.headers['Content-Type'] = '{content_type}'\n"
        "request = function()\n  i = i + 1\n"
        f"  return wrk.format('POST', '{path}', nil, bodies[(i % #bodies) + 1])\nend\n" + DONE_HOOK
    )


def post_with_headers_script(path: str, bodies: list[str], headers: dict[str, str]) -> str:
    """Like :func:`post_script`, with extra request headers (e.g. ``Prefer: return=minimal``)."""
    sets = "".join(f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}\n" for k, v in headers.items())
    return (
        f"local bodies = {_lua_list(bodies)}\n"
        "local i = 0\n"
        "wrk.headers['Content-Type'] = 'application/fhir+json'\n" + sets + "request = function()\n  i = i + 1\n"
        f"  return wrk.format('POST', {json.dumps(path)}, nil, bodies[(i % #bodies) + 1])\nend\n" + DONE_HOOK
    )


def mixed_script(
    reads: list[str], searches: list[str], create_path: str, bodies: list[str], read_pct: int = 70, search_pct: int = 20
) -> str:
    """One connection pool, interleaved: read_pct % GET reads, search_pct % GET searches, the rest POST creates."""
    return (
        f"local reads = {_lua_list(reads)}\n"
        f"local searches = {_lua_list(searches)}\n"
        f"local bodies = {_lua_list(bodies)}\n"
        "local post_headers = {['Content-Type'] = 'application/fhir+json'}\n"
        "local i = 0\n"
        "request = function()\n"
        "  i = i + 1\n"
        "  local k = (i * 37) % 100\n"
        f"  if k < {read_pct} then return wrk.format('GET', reads[(i % #reads) + 1])\n"
        f"  elseif k < {read_pct + search_pct} then return wrk.format('GET', searches[(i % #searches) + 1])\n"
        f"  else return wrk.format('POST', {json.dumps(create_path)}, post_headers, bodies[(i % #bodies) + 1]) end\n"
        "end\n" + DONE_HOOK
    )


def run(
    scenario: str, target: str, base: str, script: str, *, duration: int, connections: int, threads: int = 1, per_request: int = 1
) -> Result:
    wrk = require_wrk()
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
        lua = f.name
    try:
        proc = subprocess.run(
            [wrk, f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--timeout", "10s", "-s", lua, base],
            capture_output=True,
            text=True,
            timeout=duration + 60,
        )
    finally:
        Path(lua).unlink(missing_ok=True)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no result for {scenario}: {proc.stdout}\n{proc.stderr}")
    data = json.loads(line[6:])
    sample = next((ln[12:] for ln in proc.stdout.splitlines() if ln.startswith("BENCHSAMPLE ")), "")
    return Result(
        scenario,
        target,
        data["requests"],
        data["seconds"],
        data["errors"],
        data["p50_ms"],
        data["p95_ms"],
        data["p99_ms"],
        {str(k): v for k, v in data.get("statuses", {}).items()},
        sample,
        per_request,
        connections,
    )
