"""Waiting for a condition in async tests without fixed sleeps."""
from __future__ import annotations

import asyncio
import time
from typing import Any, Callable


async def until(fn: Callable[[], Any], timeout: float = 30.0, interval: float = 0.2) -> Any:
    """Poll ``fn`` (run in an executor: it may block on ClickHouse) until it returns something
    truthy; return that value, or fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = await asyncio.get_running_loop().run_in_executor(None, fn)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(interval)
