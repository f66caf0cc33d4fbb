"""Stopping asyncio tasks for sure, and running one every so often."""
from __future__ import annotations

import asyncio
from typing import Awaitable, Callable


async def cancel(task: asyncio.Task | None, grace: float = 1.0) -> None:
    """Cancel ``task`` and wait until it has ended.

    Cancels again every ``grace`` seconds: a cancellation can be swallowed by library code (e.g.
    ``asyncio.wait_for`` in Python 3.11 when the awaited thing completes at the same moment).
    """
    if task is None:
        return
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=grace)
    if not task.cancelled() and task.exception() is not None:
        pass  # already logged by the task's own handler; reading it here silences asyncio's warning


async def every(interval: float, tick: Callable[[], Awaitable[object]], log, event: str) -> None:
    """Await ``tick()`` every ``interval`` seconds, for ever: a service's time-driven work. A tick
    that fails (PostgreSQL or the key store away, a refusal) is logged as ``event`` and the next
    one tries again; only a cancellation ends the loop."""
    while True:
        try:
            await tick()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning(event, error=f"{type(exc).__name__}: {exc}")
        await asyncio.sleep(interval)
