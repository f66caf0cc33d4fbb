"""Stopping asyncio tasks for sure."""
from __future__ import annotations

import asyncio


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
