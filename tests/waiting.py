"""Waiting on a condition instead of sleeping: the tests that synchronise with a background
worker (audit flusher, export worker, a server process) poll for what they need with a
generous deadline, and go on as soon as it holds; on a loaded machine they only get slower."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

#: seconds a condition may take to come true: far above its time on an idle machine, so only a
#: real hang (or a broken condition) reaches it
TIMEOUT = 30.0


def wait_until(predicate: Callable[[], T], timeout: float = TIMEOUT, interval: float = 0.01, message: str | None = None) -> T:
    """Call ``predicate`` until it returns something true, and return that; AssertionError once
    ``timeout`` seconds have passed (the predicate is asked one last time at the deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"not true within {timeout} s: {message or _name(predicate)} (last: {value!r})")
        time.sleep(interval)


async def async_wait_until(predicate: Callable[[], T], timeout: float = TIMEOUT, interval: float = 0.01, message: str | None = None) -> T:
    """``wait_until`` for a coroutine: the event loop (and the tasks under test) run meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"not true within {timeout} s: {message or _name(predicate)} (last: {value!r})")
        await asyncio.sleep(interval)


async def let_tasks_start(rounds: int = 3) -> None:
    """Give the tasks just created their first steps (up to their first real wait), without
    waiting on the clock: each ``sleep(0)`` runs every task that was ready before it."""
    for _ in range(rounds):
        await asyncio.sleep(0)


def _name(predicate: Callable[[], object]) -> str:
    code = getattr(predicate, "__code__", None)
    where = f" ({code.co_filename.rsplit('/', 1)[-1]}:{code.co_firstlineno})" if code else ""
    return f"{getattr(predicate, '__qualname__', repr(predicate))}{where}"
