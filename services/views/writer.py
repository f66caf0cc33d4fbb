"""A rebuild's decoding and writing, in a process of its own beside the one that reads the stream.

Why: a rebuild in one process keeps one core busy and leaves the other half idle. Profiled
(``bench/views.py --profile``, 300,000 events): about a third of that process's time goes to
nats-py receiving the messages (parsing, headers, message objects), a fifth to decoding the
events and a quarter to asyncpg writing the batches, while PostgreSQL used a quarter of a core and
nats-server a tenth. So the reading process (:mod:`services.views.rebuild`, the
:class:`~shared.tail.Tail`) hands each batch over as raw payloads on this process's stdin, and
this one decodes the next batch while the previous one commits, exactly as the one-process
rebuild does (:class:`~services.views.project.Projection`: same code, same transactions).

The pipe: per batch, a 4-byte length then that many bytes of frames, each ``<QI`` (stream
sequence, payload length) then the payload. End of input: commit what came and print one JSON
line on stdout (``position``, ``applied``, ``duplicates``, ``undecodable``, ``max_rss_mb``).
Any error: logged on stderr, exit 1; the reading process sees the pipe close and stops the
rebuild. What is committed is committed with its mark, as in one process: a batch sent twice
(the reader followed again from the stored mark) is skipped by sequence.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import struct
import sys

import asyncpg

from services.views.project import Item, Projection, decode
from shared import log as logging
from shared import pgroles
from shared.config import city_zone

log = logging.get("views.writer")

_BATCH = struct.Struct("<I")
_FRAME = struct.Struct("<QI")


def pack(batch) -> bytes:
    """A tail's batch as the writer reads it: one length-prefixed block of frames."""
    frame = _FRAME.pack
    body = b"".join(frame(seq, len(msg.data)) + msg.data for seq, _, msg in batch)
    return _BATCH.pack(len(body)) + body


def unpack(body: bytes, zone) -> list[Item]:
    """The items of one block, decoded."""
    items, view, at, end, frame = [], memoryview(body), 0, len(body), _FRAME.unpack_from
    while at < end:
        seq, size = frame(view, at)
        at += _FRAME.size
        items.append(decode(body[at:at + size], seq, zone))
        at += size
    return items


async def write(reader: asyncio.StreamReader, projection: Projection) -> int:
    """Apply every block read until the end of input, each decoded while the one before commits."""
    committing: asyncio.Task | None = None
    position = 0
    try:
        while True:
            try:
                (size,) = _BATCH.unpack(await reader.readexactly(_BATCH.size))
            except asyncio.IncompleteReadError as exc:
                if exc.partial:
                    raise
                break
            items = unpack(await reader.readexactly(size), projection.zone)
            if committing is not None:
                position = await committing  # batches commit in stream order, one at a time
            committing = asyncio.create_task(projection.apply(items, None))
        if committing is not None:
            position = await committing
            committing = None
    finally:
        if committing is not None:
            committing.cancel()
    return position


async def main(dsn: str, generation: int) -> int:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2,
                                     setup=lambda conn: pgroles.act_as(conn, "views"))
    try:
        projection = Projection(pool, city_zone(), generation=generation)
        loop = asyncio.get_running_loop()
        # The pipe keeps Linux's 64 KiB: raised to 1 MiB (F_SETPIPE_SZ), the rebuild went from
        # 15,400-16,300 to 10,500 events/s (bench/views.py, 200,000 events, alternated).
        reader = asyncio.StreamReader(limit=2 ** 26, loop=loop)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader, loop=loop),
                                     os.fdopen(sys.stdin.fileno(), "rb", buffering=0))
        position = await write(reader, projection)
    finally:
        await pool.close()
    print(json.dumps({"position": position, "applied": projection.applied, "duplicates": projection.duplicates,
                      "undecodable": projection.undecodable,
                      "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}),
          flush=True)
    return 0


def run() -> int:
    p = argparse.ArgumentParser(prog="python -m services.views.writer", description=__doc__.split("\n\n")[0])
    p.add_argument("--generation", type=int, required=True)
    a = p.parse_args()
    dsn = os.environ.get("CORDON_VIEWS_WRITER_DSN") or os.environ.get("CORDON_PG_DSN")
    if not dsn:
        print("views writer: needs CORDON_VIEWS_WRITER_DSN or CORDON_PG_DSN", file=sys.stderr)
        return 2
    logging.setup("json", os.environ.get("CORDON_LOG_LEVEL", "warning"), stream=sys.stderr)
    try:
        return asyncio.run(main(dsn, a.generation))
    except Exception as exc:
        log.error("views.writer.failed", error=f"{type(exc).__name__}: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(run())
