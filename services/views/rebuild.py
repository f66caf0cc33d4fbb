"""Rebuilding every read model from the stream beside the current ones, then swapping.

A new generation is filled from stream sequence 1 by its own tail (large batches, the same
projection code as the live path). The current generation keeps answering and the live projector
keeps feeding it meanwhile. Once the new generation is within one batch of the stream's head, the
pointer is swapped in one transaction and the old schema dropped; the live projector notices its
position moved and follows on from the new generation's mark (:class:`~shared.tail.Reposition`).

Given ``writer_dsn``, the batches are decoded and written by a second process
(:mod:`services.views.writer`) while this one reads the stream: 1.2 times the rate of one process
on two cores (``bench/views.py``, alternated: 16,800-17,800 against 14,400-14,500 events/s), where
the two processes, PostgreSQL and nats-server then share both cores. Without it, everything
happens here.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from dataclasses import dataclass
from datetime import tzinfo
from typing import Callable

import asyncpg
from nats.aio.client import Client

from services.views import schema, writer
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
                  tick: float = 0.25, writer_dsn: str | None = None) -> Result:
    async with pool.acquire() as conn:
        await schema.migrate(conn)
        generation = await schema.create(conn)
    log.info("views.rebuild.started", generation=generation, writer="process" if writer_dsn else "here")
    projection = Projection(pool, zone, generation=generation)
    out = _Writer(writer_dsn, generation, zone) if writer_dsn else None
    tail = Tail(nc, name=f"rebuild-g{generation}", position=projection.position,
                prepare=out.prepare if out else projection.prepare, apply=out.apply if out else projection.apply,
                rewind=projection.rewind, batch_max=batch_max)
    started = time.monotonic()
    try:
        if out:
            await out.start()
        task = asyncio.create_task(tail.run(), name=f"views.rebuild.g{generation}")
        watch = [task, *([out.ended] if out else [])]
        try:
            await _catch_up(tail, watch, started, batch_max, progress, tick)
            async with pool.acquire() as conn:  # one sorted build instead of a million inserts
                await schema.index(conn, generation)
            await _catch_up(tail, watch, started, batch_max, progress, tick)
        finally:
            await _stop(task)
        applied = await out.finish() if out else projection.applied
    except BaseException:
        if out:
            await out.kill()  # before the drop: its transaction would hold the schema
        async with pool.acquire() as conn:  # an abandoned build leaves nothing behind
            await schema.drop(conn, generation)
        raise
    seconds = time.monotonic() - started
    position = await projection.position()
    async with pool.acquire() as conn:
        retired = await schema.swap(conn, generation)
        if not keep_old:
            await schema.drop(conn, retired)
    log.info("views.rebuild.swapped", generation=generation, retired=retired, position=position,
             seconds=round(seconds, 2))
    return Result(generation, retired, position, applied, seconds)


class WriterFailed(Exception):
    """The writing process ended before it was told to."""


class _Writer:
    """The writing process of one rebuild, as the tail sees it: ``prepare`` packs a batch,
    ``apply`` hands it over (the position it returns is the one sent; the stored mark follows)."""

    def __init__(self, dsn: str, generation: int, zone: tzinfo):
        self.dsn = dsn
        self.generation = generation
        self.zone = zone
        self.proc: asyncio.subprocess.Process | None = None
        self.ended: asyncio.Future | None = None

    async def start(self) -> None:
        env = {**os.environ, "CORDON_VIEWS_WRITER_DSN": self.dsn, "CORDON_TIMEZONE": str(self.zone)}
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.views.writer", "--generation", str(self.generation),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env)
        self.ended = asyncio.ensure_future(self._ended())

    async def _ended(self) -> None:
        code = await self.proc.wait()
        raise WriterFailed(f"the views writer process ended with exit code {code} (its error is logged above)")

    @staticmethod
    def prepare(batch) -> tuple[bytes, int]:
        return writer.pack(batch), batch[-1][0]

    async def apply(self, packed: tuple[bytes, int], after: int | None) -> int:
        block, last = packed
        self.proc.stdin.write(block)
        await self.proc.stdin.drain()  # the pipe's back-pressure: the tail stops asking for more
        return last

    async def finish(self) -> int:
        """End of input: wait for the last commit; the events it applied."""
        self.ended.cancel()
        self.proc.stdin.close()
        out, _ = await self.proc.communicate()
        if self.proc.returncode != 0:
            raise WriterFailed(f"the views writer process failed with exit code {self.proc.returncode}")
        figures = json.loads(out.decode().strip().splitlines()[-1])
        log.info("views.writer.finished", generation=self.generation, **figures)
        return figures["applied"]

    async def kill(self) -> None:
        if self.ended is not None:
            self.ended.cancel()
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


async def _catch_up(tail: Tail, watch: list[asyncio.Future], started: float, slack: int,
                    progress: Progress | None, tick: float) -> None:
    """Until the tail is within ``slack`` messages of the head (the live projector does the rest)."""
    head = await tail.head()
    while True:
        done, _ = await asyncio.wait(watch, timeout=tick, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()  # neither the tail nor the writer ends by itself: this raises its error
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
