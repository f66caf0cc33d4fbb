"""The ``CORDON`` stream rebuilt from the record, for ``cordon restore`` (:mod:`services.ops.restore`
says why so): every service's events published again in the old stream's order, then those it did
not hold yet; the old sequences mapped to the new ones; the outboxes emptied."""
from __future__ import annotations

import bisect
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable

import asyncpg
from nats.aio.client import Client

from services.ops import pgtools
from services.ops.republish import RECORDING, Result, publish_page, subject_of
from shared import bus
from shared.relay import Relay
from shared.subjects import STREAM

Say = Callable[[str], None]


class RestoreError(RuntimeError):
    """The restore cannot go on; the message says why and what to do."""


class Renumbering:
    """The old stream's sequences mapped to the new stream's, for the events published again: the
    first events of the new stream, in the old order (those the old stream did not hold follow)."""

    def __init__(self) -> None:
        self.old: list[int] = []  # the old sequence of new sequence i + 1

    def add(self, old_seq: int) -> None:
        self.old.append(old_seq)

    def position(self, old: int) -> int:
        """Where a position of the old stream (everything up to sequence ``old`` applied) is in the
        new one: the new sequence of the last event at or before ``old``."""
        return bisect.bisect_right(self.old, old)


@dataclass
class Rebuilt:
    result: Result
    renumbering: Renumbering
    #: (subject, event id) of each message of the new stream, in order
    messages: list[tuple[str, str]] = field(default_factory=list)


def _events_query(services: list[str]) -> str:
    """Every recorded event: first those the old stream held, in its order, then the others."""
    union = " UNION ALL ".join(
        f"SELECT '{s}'::text AS service, position, event_id, type, community, envelope FROM {s}.events"
        for s in services)
    return (f"SELECT e.service, e.position, e.event_id::text AS event_id, e.type, e.community, e.envelope, "
            f"o.seq AS old_seq FROM ({union}) e LEFT JOIN (SELECT event_id, min(seq) AS seq FROM restore_order "
            f"GROUP BY event_id) o USING (event_id) ORDER BY o.seq NULLS LAST, e.service, e.position")


async def rebuild_stream(conn: asyncpg.Connection, nc: Client, order: list[tuple[int, str]], dedupe_window_s: float,
                         replicas: int, say: Say, batch: int = 1000) -> Rebuilt:
    """Create ``CORDON`` (it must be new) and publish every recorded event into it (see the module)."""
    js = nc.jetstream()
    await bus.ensure_stream(js, dedupe_window_s, replicas)
    if (await js.stream_info(STREAM)).state.last_seq:
        raise RestoreError(f"the stream {STREAM} is not new: restore onto a NATS without it")
    services = [s for s in RECORDING if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{s}.events")]
    total = sum([await conn.fetchval(f"SELECT count(*) FROM {s}.events") for s in services])
    rebuilt = Rebuilt(Result(total=total), Renumbering())
    say(f"publishing the record's {total:,} events again, in the old stream's order")
    publisher, started, shown = Relay(service="restore", pool=None, nc=nc, batch=batch), time.monotonic(), [0.0]

    def progress(done: int, of: int, seconds: float) -> None:
        if time.monotonic() - shown[0] >= pgtools.TICK or done == of:
            shown[0] = time.monotonic()
            say(f"published {done:,} of {of:,} ({done / seconds if seconds else 0:,.0f}/s)")

    async with conn.transaction():
        await conn.execute("CREATE TEMP TABLE restore_order (seq bigint PRIMARY KEY, event_id uuid) ON COMMIT DROP")
        await conn.copy_records_to_table("restore_order", records=[(seq, uuid.UUID(e)) for seq, e in order if e])
        page: list[dict] = []
        async for r in conn.cursor(_events_query(services), prefetch=batch):
            page.append({"position": len(rebuilt.messages) + len(page) + 1, "event_id": r["event_id"],
                         "envelope": r["envelope"], "old_seq": r["old_seq"],
                         "subject": subject_of(r["service"], r["community"], r["type"], r["envelope"])})
            if len(page) == batch:
                await _publish(publisher, page, rebuilt, started, progress)
                page = []
        if page:
            await _publish(publisher, page, rebuilt, started, progress)
    state = (await js.stream_info(STREAM)).state
    if state.messages != total or state.last_seq != total:
        raise RestoreError(f"the new stream holds {state.messages:,} messages up to sequence {state.last_seq:,}, "
                           f"not the record's {total:,} events")
    return rebuilt


async def _publish(publisher: Relay, page: list[dict], rebuilt: Rebuilt, started: float, progress) -> None:
    if not await publish_page(publisher, page, rebuilt.result, started, progress):
        raise RestoreError(f"publishing stopped at event {rebuilt.result.stopped_at.get('event_id')}: "
                           f"{rebuilt.result.error}")
    if rebuilt.result.duplicates:
        raise RestoreError("JetStream dropped events as duplicates: the stream was not new")
    for item in page:
        rebuilt.messages.append((item["subject"], item["event_id"]))
        if item["old_seq"] is not None:
            rebuilt.renumbering.add(item["old_seq"])


async def empty_outboxes(conn: asyncpg.Connection) -> int:
    """Every event is on the new stream: nothing is left for the relays (beyond JetStream's duplicate
    window they would store a second copy)."""
    emptied = 0
    for s in RECORDING:
        if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{s}.outbox"):
            emptied += int((await conn.execute(f"DELETE FROM {s}.outbox")).split()[-1])
    return emptied
