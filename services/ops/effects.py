"""`cordon reconcile`'s check of the local copies that durable consumers keep (the directories,
checkpoint's copy of quarantine facts, logistics' sealed areas): is each copy exactly what the
events its consumer applied make of it?

For each consumer that declares its copy (:class:`shared.service.LocalCopy`): a scratch schema gets
the copy's tables; the events the consumer's inbox says it applied (not those it parked) are read
from the stream in stream order, decoded as the consumer decodes them, and applied there through
the consumer's own ``apply``; then the scratch tables are compared with the live ones row for row.

Nothing waits for the check. The live tables are only read, in a REPEATABLE READ, READ ONLY
snapshot: a consumer commits its effects and its inbox rows together, so in one snapshot the
inbox says exactly which events the tables hold. The replay writes in short transactions of its
own (one long writing transaction would hold back every service's relay, see
:mod:`services.ops.scratch`), before that snapshot is taken: so the snapshot is compared only if
its inbox holds exactly the events replayed. If the consumer applied more meanwhile, those are
replayed too and a new snapshot taken, a few rounds at most; a consumer that never stops for
that long is noted, not reported as different.

Every column is compared: a copy's values all come from the events and their envelopes (times are
the events' own, never ``now()``; no sequence or serial), so a replay of the same events in the
same order writes the same rows.
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import AsyncIterator, Callable

import asyncpg
import msgspec
from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from services.ops import rows, scratch
from shared import envelope as env
from shared.service import ConsumerSpec
from shared.subjects import STREAM

#: Snapshots taken, at most, while the consumer keeps applying events.
ROUNDS = 5
#: Events replayed per transaction (short: see the module's docstring).
CHUNK = 200

#: progress(what, done, total): a long check says how far it is.
Progress = Callable[[str, int, int], None]


@dataclass
class Outcome:
    """One effect check: its summary line, its differences, and what it could not check."""

    summary: str = ""
    differences: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def events(n: int) -> str:
    return f"{n:,} event{'s' * (n != 1)}"


def copy_consumers(services: tuple[str, ...]) -> list[tuple[str, ConsumerSpec]]:
    """(schema, consumer) of every durable consumer that keeps a local copy, in ``services``."""
    from services.checkpoint.app import spec as checkpoint
    from services.logistics.app import spec as logistics
    from services.quarantine.app import spec as quarantine

    found = []
    for spec in (checkpoint(), quarantine(), logistics()):
        if spec.name in services:
            found.extend((spec.name, c) for c in spec.consumers if c.copy is not None)
    return found


async def check_copy(conn: asyncpg.Connection, nc: Client, schema: str, consumer: ConsumerSpec,
                     progress: Progress | None = None) -> Outcome | None:
    """Compare ``consumer``'s copy in ``schema`` with a replay of what it applied (None: the
    service never ran here)."""
    copy, what = consumer.copy, f"copy {consumer.name}"
    if not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{schema}.inbox"):
        return None
    space = await scratch.create(conn)
    try:
        await conn.execute(copy.ddl(space) + f"; CREATE TABLE {space}.applied (event_id uuid PRIMARY KEY)")
        replay = _Replay(conn, nc, space, consumer, progress)
        for _ in range(ROUNDS):
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                todo = {r[0] for r in await conn.fetch(_NOT_REPLAYED.format(live=schema, space=space), consumer.name)}
                undone = await conn.fetchval(_NO_LONGER_APPLIED.format(live=schema, space=space), consumer.name)
                if not todo and not undone:
                    return await _compare(conn, schema, space, copy.tables, what, replay)
            await replay.catch_up(todo, start_over=bool(undone))
        return Outcome(f"{what}: {events(replay.count)} replayed, not compared",
                       differences=replay.differences,
                       notes=[f"{consumer.name} kept applying events during the check; run it again when quiet"])
    finally:
        with contextlib.suppress(Exception):  # else the next reconcile drops it, and says so
            await scratch.drop(conn, space)


#: The events the inbox says were applied that the scratch copy has not had yet.
_NOT_REPLAYED = """
SELECT i.event_id::text FROM {live}.inbox i
WHERE i.consumer = $1 AND NOT i.parked
  AND NOT EXISTS (SELECT 1 FROM {space}.applied a WHERE a.event_id = i.event_id)"""

#: Events replayed that the inbox no longer says were applied (its rows were removed by hand).
_NO_LONGER_APPLIED = """
SELECT count(*) FROM {space}.applied a
WHERE NOT EXISTS (SELECT 1 FROM {live}.inbox i WHERE i.consumer = $1 AND i.event_id = a.event_id AND NOT i.parked)"""


async def _compare(conn, schema: str, space: str, tables: tuple[str, ...], what: str, replay: "_Replay") -> Outcome:
    out = Outcome(differences=list(replay.differences))
    differing = 0
    for name in tables:
        key = await _primary_key(conn, space, name)
        n, lines = await rows.differences(conn, schema, space, rows.Table(name, key))
        differing += bool(n)
        out.differences.extend(f"{what}: {line}" for line in lines)
    agree = len(tables) - differing
    out.summary = (f"{what}: {events(replay.count)} replayed, {agree} table{'s' * (agree != 1)} agree"
                   + (f", {differing} differ{'s' * (differing == 1)}" if differing else ""))
    return out


async def _primary_key(conn, schema: str, table: str) -> tuple[str, ...]:
    found = await conn.fetch(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
        "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = $1::regclass AND i.indisprimary "
        "ORDER BY array_position(i.indkey::int2[], a.attnum)", f"{schema}.{table}")
    return tuple(r[0] for r in found)


class _Replay:
    """Applies events of the stream, by id, to the scratch copy, in stream order."""

    def __init__(self, conn, nc: Client, space: str, consumer: ConsumerSpec, progress: Progress | None):
        self.conn, self.nc, self.space, self.consumer = conn, nc, space, consumer
        self.progress = progress
        self.count = 0
        #: where the next scan starts: past the last event replayed (those before it are in order)
        self.start = 1
        self.differences: list[str] = []

    async def catch_up(self, ids: set[str], start_over: bool = False) -> None:
        if start_over:
            await self._start_over()
            return  # the next snapshot names every event applied
        total, first = len(ids), self.start
        if self.progress:
            self.progress(f"copy {self.consumer.name}", 0, total)
        async for chunk in _messages(self.nc, self.consumer.subjects, self.start):
            picked = []
            for seq, data in chunk:
                event_id = _event_id(data)
                if event_id in ids:
                    ids.discard(event_id)  # a copy of it later on the stream is dropped, as the inbox does
                    picked.append((seq, event_id, data))
            await self._apply(picked)
            if self.progress:
                self.progress(f"copy {self.consumer.name}", total - len(ids), total)
            if not ids:
                break
        if ids and first > 1:
            await self._start_over()  # applied out of stream order (a dead letter replayed): all again
        elif ids:
            for event_id in sorted(ids):  # nowhere on the stream: nothing to replay it from
                self.differences.append(f"copy {self.consumer.name}: applied event {event_id}, which the stream "
                                        "no longer holds; its effect cannot be checked")
            await self._account(sorted(ids))

    async def _apply(self, picked: list[tuple[int, str, bytes]]) -> None:
        for i in range(0, len(picked), CHUNK):
            part = picked[i:i + CHUNK]
            async with self.conn.transaction():
                for seq, event_id, data in part:
                    try:
                        raw, event = env.decode(data)  # as shared.consumer decodes what it applies
                    except (msgspec.DecodeError, msgspec.ValidationError, env.UnknownEventType) as exc:
                        self.differences.append(f"copy {self.consumer.name}: applied event {event_id} (stream "
                                                f"sequence {seq}), which cannot be decoded now: {exc}")
                        continue
                    await self.consumer.copy.apply(self.conn, self.space, raw, event)
                await self._account([event_id for _, event_id, _ in part])
            self.count += len(part)
            self.start = part[-1][0] + 1

    async def _account(self, ids: list[str]) -> None:
        await self.conn.execute(f"INSERT INTO {self.space}.applied SELECT unnest($1::uuid[])", ids)

    async def _start_over(self) -> None:
        tables = ", ".join(f"{self.space}.{t}" for t in (*self.consumer.copy.tables, "applied"))
        await self.conn.execute(f"TRUNCATE {tables}")  # the scratch copy's own tables, nobody else's
        self.count, self.start, self.differences = 0, 1, []


class _Id(msgspec.Struct):
    event_id: str = ""


_id = msgspec.json.Decoder(_Id)


def _event_id(data: bytes) -> str:
    try:
        return _id.decode(data).event_id
    except (msgspec.DecodeError, msgspec.ValidationError):
        return ""  # undecodable: the consumer parked it, so its inbox does not say it applied it


async def _messages(nc: Client, subjects: list[str], start: int, batch: int = 1000
                    ) -> AsyncIterator[list[tuple[int, bytes]]]:
    """The stream's messages on ``subjects`` from sequence ``start`` up to its end as it is found,
    in order, a batch at a time."""
    js = nc.jetstream()
    sub = await js.pull_subscribe("", stream=STREAM, config=ConsumerConfig(
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start, ack_policy=AckPolicy.NONE,
        filter_subjects=subjects, inactive_threshold=30.0, mem_storage=True, num_replicas=1))
    try:
        if not (await sub.consumer_info()).num_pending:
            return
        while True:
            try:
                msgs = await sub.fetch(batch, timeout=2.0)
            except asyncio.TimeoutError:
                return  # nothing more
            yield [(m.metadata.sequence.stream, m.data) for m in msgs]
            if msgs[-1].metadata.num_pending == 0:
                return
    finally:
        await sub.unsubscribe()


class Rate:
    """A progress line on ``err`` at most once a second: what, how far, how fast."""

    def __init__(self, err, every: float = 1.0):
        self.err, self.every = err, every
        self.started: dict[str, float] = {}
        self.shown = 0.0

    def __call__(self, what: str, done: int, total: int) -> None:
        now = time.monotonic()
        started = self.started.setdefault(what, now)
        if not done or (now - self.shown < self.every and done < total):
            return  # (0: the start, timed from here)
        self.shown = now
        rate = done / (now - started) if now > started else 0.0
        print(f"reconcile: {what}: {done:,} of {total:,} events ({rate:,.0f}/s)", file=self.err)
