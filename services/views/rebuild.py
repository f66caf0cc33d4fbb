"""Rebuilding every read model from the stream beside the current ones, then swapping.

A new generation is filled from stream sequence 1 by its own tail (large batches, the same
projection code as the live path). The current generation keeps answering and the live projector
keeps feeding it meanwhile. Once the new generation is within one batch of the stream's head, the
pointer is swapped in one transaction and the old schema dropped; the live projector notices its
position moved and follows on from the new generation's mark (:class:`~shared.tail.Reposition`).
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from datetime import tzinfo
from typing import Callable

import asyncpg
from nats.aio.client import Client

from services.views import schema
from services.views.project import Projection
from shared.tail import Tail
from shared import log as logging

log = logging.get("views.rebuild")

#: progress(position reached, stream head, seconds elapsed)
Progress = Callable[[int, int, float], None]


@dataclass(frozen=True)
class Result:
    generation: int
    retired: int
    position: int
    applied: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.position / self.seconds if self.seconds > 0 else 0.0


async def rebuild(pool: asyncpg.Pool, nc: Client, zone: tzinfo, *, batch_max: int = 5000,
                  progress: Progress | None = None, keep_old: bool = False,
                  tick: float = 0.25) -> Result:
    async with pool.acquire() as conn:
        await schema.migrate(conn)
        generation = await schema.create(conn)
    log.info("views.rebuild.started", generation=generation)
    projection = Projection(pool, zone, generation=generation)
    tail = Tail(nc, name=f"rebuild-g{generation}", position=projection.position,
                prepare=projection.prepare, apply=projection.apply, rewind=projection.rewind, batch_max=batch_max)
    started = time.monotonic()
    task = asyncio.create_task(tail.run(), name=f"views.rebuild.g{generation}")
    try:
        await _catch_up(tail, task, started, batch_max, progress, tick)
        async with pool.acquire() as conn:  # one sorted build instead of a million inserts
            await schema.index(conn, generation)
        await _catch_up(tail, task, started, batch_max, progress, tick)
    except BaseException:
        await _stop(task)
        async with pool.acquire() as conn:  # an abandoned build leaves nothing behind
            await schema.drop(conn, generation)
        raise
    await _stop(task)
    seconds = time.monotonic() - started
    position = await projection.position()
    async with pool.acquire() as conn:
        retired = await schema.swap(conn, generation)
        if not keep_old:
            await schema.drop(conn, retired)
    log.info("views.rebuild.swapped", generation=generation, retired=retired, position=position,
             seconds=round(seconds, 2))
    return Result(generation, retired, position, projection.applied, seconds)


async def _catch_up(tail: Tail, task: asyncio.Task, started: float, slack: int,
                    progress: Progress | None, tick: float) -> None:
    """Until the tail is within ``slack`` messages of the head (the live projector does the rest)."""
    head = await tail.head()
    while True:
        done, _ = await asyncio.wait([task], timeout=tick)
        if done:
            task.result()  # the tail never returns by itself: this raises its error
        position = tail.hwm or 0
        if progress:
            progress(position, max(head, position), time.monotonic() - started)
        if position >= head:
            head = await tail.head()
            if head - position <= slack:
                return


async def _stop(task: asyncio.Task) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
