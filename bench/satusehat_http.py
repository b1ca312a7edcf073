"""``python -m bench.satusehat_http [--calls 3000]``: CPU per SATUSEHAT call of the sync's HTTP client.

The sync's process sends one call per resource (docs/satusehat.md), so the client's CPU per call
is the sync's main cost beside the server. This compares the shipped client
(``SatusehatClient.call``, aiohttp) with the same POST through httpx (the client it replaced),
8 calls in flight, against the test simulator answering at once in a process of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import httpx
from rich.console import Console
from rich.table import Table

from fhir_server import jsonio
from fhir_server.satusehat.client import SatusehatClient
from fhir_server.satusehat.facility import Facility

IN_FLIGHT = 8
BODY = {
    "resourceType": "Observation",
    "status": "final",
    "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
    "subject": {"reference": "Patient/P02478375538"},
    "valueQuantity": {"value": 80, "unit": "beats/minute", "system": "http://unitsofmeasure.org", "code": "/min"},
}


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def _measure(call: Callable[[], Awaitable[int]], calls: int) -> tuple[float, float]:
    """(CPU µs per call, calls/s) of ``calls`` calls, ``IN_FLIGHT`` at a time, after a warm-up."""
    await asyncio.gather(*[call() for _ in range(IN_FLIGHT)])
    cpu0, t0 = _cpu(), time.perf_counter()
    for _ in range(calls // IN_FLIGHT):
        statuses = await asyncio.gather(*[call() for _ in range(IN_FLIGHT)])
        assert all(s == 201 for s in statuses), statuses
    took = time.perf_counter() - t0
    return 1e6 * (_cpu() - cpu0) / calls, calls / took


async def _run(base: str, calls: int, rounds: int) -> list[tuple[str, float, float]]:
    from tests.satusehat.simulator import CLIENT_ID, CLIENT_SECRET, ORG

    facility = Facility("bench", organization_id=ORG, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, base=base)
    shipped = SatusehatClient(facility)
    token, _ = await shipped.token()
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/fhir+json", "Content-Type": "application/fhir+json"}
    rows = []
    async with httpx.AsyncClient(timeout=30.0) as plain:

        async def via_shipped() -> int:
            return (await shipped.call("POST", "Observation", BODY)).status or 0

        async def via_httpx() -> int:
            r = await plain.post(f"{facility.fhir_url}/Observation", content=jsonio.dumps(BODY), headers=headers)
            jsonio.loads(r.content)
            return r.status_code

        for _ in range(rounds):  # alternating: the machine's drift hits both alike
            rows.append(("SatusehatClient (aiohttp)", *await _measure(via_shipped, calls)))
            rows.append(("httpx.AsyncClient", *await _measure(via_httpx, calls)))
    await shipped.aclose()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.satusehat_http", description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=3000, help="calls per measurement")
    ap.add_argument("--rounds", type=int, default=2, help="measurements of each client, alternating")
    args = ap.parse_args()
    code = "import sys; from tests.satusehat.simulator import Simulator; s = Simulator().start(); "
    code += "print(s.url, flush=True); sys.stdin.read(); s.stop()"
    sim = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert sim.stdin is not None and sim.stdout is not None
    try:
        rows = asyncio.run(_run(sim.stdout.readline().decode().strip(), args.calls, args.rounds))
    finally:
        sim.stdin.close()
        sim.wait(10)
    table = Table(title=f"CPU per SATUSEHAT call ({args.calls} POSTs, {IN_FLIGHT} in flight, simulator answering at once)")
    for col in ("client", "CPU µs/call", "calls/s"):
        table.add_column(col, justify="left" if col == "client" else "right")
    for name, cpu, rate in rows:
        table.add_row(name, f"{cpu:,.0f}", f"{rate:,.0f}")
    Console().print(table)


if __name__ == "__main__":
    main()
