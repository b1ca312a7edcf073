"""The app served by a real uvicorn on a loopback port, in a thread of the test process (so a
test can also reach its database), for the websocket channel's tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI

from fhir_server.app import create_app
from fhir_server.config import Settings


@dataclass
class Live:
    app: FastAPI
    port: int

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/fhir"


@contextmanager
def serving(settings: Settings) -> Iterator[Live]:
    app = create_app(settings)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, loop="asyncio", lifespan="on", log_level="warning", ws="auto")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield Live(app, port)
    finally:
        server.should_exit = True
        thread.join(30)
