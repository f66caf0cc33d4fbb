"""`cordon reconcile`'s check of the views: a shadow generation is built from the stream up to
exactly the current generation's mark (``hwm``), with the views' own projection code and batches
as a rebuild's, and compared with the current generation table by table; then it is dropped,
whatever happens.

The current generation is only read, in a REPEATABLE READ, READ ONLY snapshot, and only when that
snapshot's mark is the one the shadow was built to: each batch of the live projector commits its
rows with its mark, so the snapshot's tables are then exactly what the stream up to the mark
makes. If the projector moved on meanwhile, the shadow follows it to the new mark, a few rounds at
most; if it keeps moving, or a rebuild swapped generations, that is a note, not a difference.

Compared: ``figures``, ``rollups``, ``members``, ``communities``, ``ignored`` and the ``timeline`` (one row per
event about a resident: the largest table, but the shadow writes it anyway, and comparing it costs
a sort of each side, about what building it cost). Not compared: ``meta`` (the mark, counters and
time of each build's own work) and ``seen`` (the inbox: its effect is what the other tables hold).
Stream sequences (``communities.first_seq``, ``timeline.seq``) are compared too: a replay of the
same stream gives the same ones. After the stream lost its tail or was created anew, the live
generation keeps the sequences it saw first, which now name other messages: that shows as a
difference, and ``cordon views rebuild`` is the repair.
"""
from __future__ import annotations

import asyncio
import contextlib
from datetime import tzinfo

import asyncpg
from nats.aio.client import Client

from services.ops import rows, scratch
from services.ops.effects import ROUNDS, Outcome, Progress, events
from services.views import schema
from services.views.project import Projection
from shared.subjects import STREAM
from shared.tail import Tail

TABLES = (
    # A figure at 0 is no figure: each batch folds its deltas and drops those that cancel out,
    # so whether a figure that went up and down again is stored as 0 or not at all depends on
    # where the batches of each build fell. Every reader counts a missing figure as 0.
    rows.Table("figures", key=("community", "metric", "day"), where="n <> 0"),
    rows.Table("rollups", key=("scope", "metric", "day"), where="n <> 0"),
    rows.Table("members", key=("set", "key")),
    rows.Table("communities", key=("community",)),
    rows.Table("ignored", key=("type",)),
    rows.Table("timeline"),
)

#: Stream messages per transaction of the shadow: smaller than a rebuild's 5,000, since each
#: transaction holds back every service's relay while it writes (tens of milliseconds, not a
#: hundred or more); a reconcile is in less of a hurry than a rebuild.
BATCH = 1000


async def check_views(conn: asyncpg.Connection, pool: asyncpg.Pool, nc: Client, zone: tzinfo,
                      progress: Progress | None = None) -> Outcome | None:
    """Compare the current generation with a shadow built to its mark (None: no views here)."""
    if not await conn.fetchval("SELECT to_regclass('views.current') IS NOT NULL"):
        return None
    live = await schema.current(conn)
    if live is None:
        return None
    target = await schema.hwm(conn, live)
    shadow = await scratch.create_shadow(conn)
    try:
        projection = Projection(pool, zone, generation=shadow)
        for _ in range(ROUNDS):
            await _build(nc, projection, shadow, target, progress)
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                now, mark = await _mark(conn)
                if (now, mark) == (live, target):
                    return await _compare(conn, live, shadow, target, projection.applied, await _head(nc))
            if now != live or mark < target:
                break  # swapped or rewound: the shadow cannot follow there
            target = mark
        return Outcome(f"views: generation {live} not compared", notes=[
            "views moved during the check; run it again when quiet"])
    finally:
        with contextlib.suppress(Exception):  # else the next reconcile drops it, and says so
            await scratch.drop_shadow(conn, shadow)


async def _mark(conn) -> tuple[int, int]:
    live = await schema.current(conn)
    return live, await schema.hwm(conn, live)


async def _head(nc: Client) -> int:
    return (await nc.jetstream().stream_info(STREAM)).state.last_seq


async def _build(nc: Client, projection: Projection, shadow: int, until: int, progress: Progress | None) -> None:
    tail = Tail(nc, name=f"reconcile-g{shadow}", position=projection.position, prepare=projection.prepare,
                apply=projection.apply, rewind=projection.rewind, batch_max=BATCH, until=until)
    if progress:
        progress("views (shadow generation)", 0, until)
    task = asyncio.create_task(tail.run(), name=f"reconcile.views.g{shadow}")
    try:
        while True:
            done, _ = await asyncio.wait([task], timeout=0.5)
            if progress:
                progress("views (shadow generation)", tail.hwm or 0, until)
            if done:
                return task.result()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _compare(conn, live: int, shadow: int, mark: int, applied: int, head: int) -> Outcome:
    out, differing = Outcome(), 0
    for table in TABLES:
        n, lines = await rows.differences(conn, schema.name(live), schema.name(shadow), table)
        differing += bool(n)
        out.differences.extend(f"views: {line}" for line in lines)
    if head < mark:
        out.notes.append(f"the stream ends at sequence {head:,}, below the views' mark {mark:,}: "
                         "the stream lost its last events (see cordon republish)")
    agree = len(TABLES) - differing
    out.summary = (f"views: {events(applied)} replayed into a shadow of generation {live} up to sequence "
                   f"{mark:,}, {agree} table{'s' * (agree != 1)} agree"
                   + (f", {differing} differ{'s' * (differing == 1)}" if differing else ""))
    return out
