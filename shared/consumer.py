"""Durable JetStream pull consumers whose effects commit with a record of what they consumed.

For each fetched batch, one PostgreSQL transaction records (consumer, event id) in the inbox and
applies the handler's effect for every event not seen before; the messages are acknowledged after
the commit. A redelivery, a replay or a restart therefore changes nothing. A message whose handler
keeps failing is retried in place (so the stream order holds) and, after ``park_after`` attempts,
parked in ``dead_letters`` with its error, instead of blocking the stream forever. A failure that
is not the message's fault (PostgreSQL away, out of connections, read-only after a fail-over:
``store.TRANSIENT``) parks nothing: the batch is held and tried again, before any later message.
"""
from __future__ import annotations

import asyncio
from typing import Awaitable, Callable

import asyncpg
import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import APIError, NotFoundError

from shared import envelope as env
from shared import store
from shared import log as logging
from shared.tasks import cancel
from shared.pull import ConsumerGone, Puller
from shared.subjects import STREAM

log = logging.get("consumer")

Handle = Callable[[asyncpg.Connection, env.RawEnvelope, env.Event], Awaitable[None]]


class Undecodable(Exception):
    pass


def _decode(msg: Msg) -> tuple[env.RawEnvelope, env.Event]:
    try:
        return env.decode(msg.data)
    except (msgspec.DecodeError, msgspec.ValidationError, env.UnknownEventType) as exc:
        raise Undecodable(f"cannot decode {msg.subject}: {exc}") from None


class Consumer:
    """One durable consumer of ``CORDON`` feeding one handler, exactly-once in effect."""

    def __init__(
        self,
        *,
        name: str,
        schema: str,
        subjects: list[str],
        handle: Handle,
        pool: asyncpg.Pool,
        nc: Client,
        batch: int = 256,
        park_after: int = 5,
        ack_wait: float = 30.0,
        retry_delay: float = 0.05,
    ):
        self.name = name
        self.schema = schema
        self.subjects = subjects
        self.handle = handle
        self.pool = pool
        self.nc = nc
        self.js = nc.jetstream()
        self.batch = batch
        self.park_after = park_after
        self.ack_wait = ack_wait
        self.retry_delay = retry_delay
        self._task: asyncio.Task | None = None
        self._puller: Puller | None = None
        self.applied = 0
        self.parked = 0
        self.last_error: str | None = None

    async def start(self) -> None:
        await self._ensure_consumer()
        self._task = asyncio.create_task(self._run(), name=f"consumer.{self.name}")

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None
        await self._drop_puller()

    async def _drop_puller(self) -> None:
        if self._puller is not None:
            await self._puller.stop()
            self._puller = None

    async def lag(self) -> int | None:
        """Messages in the stream this consumer has not yet acknowledged (None if unknown)."""
        try:
            info = await self.js.consumer_info(STREAM, self.name)
            return info.num_pending + info.num_ack_pending
        except Exception:
            return None

    async def _ensure_consumer(self) -> None:
        config = ConsumerConfig(
            durable_name=self.name,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=self.ack_wait,
            max_deliver=-1,
            max_ack_pending=max(self.batch * 4, 1000),
            filter_subjects=self.subjects if len(self.subjects) > 1 else None,
            filter_subject=self.subjects[0] if len(self.subjects) == 1 else None,
        )
        try:
            await self.js.add_consumer(STREAM, config)
        except APIError:
            await self.js.consumer_info(STREAM, self.name)  # exists already: keep its position

    async def _run(self) -> None:
        backoff = 0.1
        # A batch that failed is kept and tried again before anything after it: later events of a
        # stream must never take effect before earlier ones (a CaseOpened applied after its
        # CaseReleased would stop a released resident at the gate again). Fetching on and letting
        # JetStream redeliver the failed batch after ack_wait would reorder exactly that way.
        held: list[Msg] = []
        while True:
            msgs = held
            try:
                if self._puller is None:
                    self._puller = Puller(self.nc, self.name, batch=self.batch)
                    await self._puller.start()
                if not msgs:
                    msgs = await self._puller.next_batch(timeout=1.0)
                if msgs:
                    await self._process(msgs)
                held, backoff = [], 0.1
            except asyncio.CancelledError:
                raise
            except (ConsumerGone, NotFoundError):
                held = []  # the consumer starts again from its new position; the inbox dedupes
                await self._drop_puller()
                await self._recreate(backoff)
                backoff = min(backoff * 2, 5.0)
            except Exception as exc:
                held = msgs
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("consumer.retry", consumer=self.name, error=self.last_error, held=len(held))
                await asyncio.sleep(backoff)
                await self._still_working(held)
                backoff = min(backoff * 2, 5.0)

    async def _still_working(self, msgs: list[Msg]) -> None:
        """Reset the ack timer of a held batch, so JetStream does not redeliver it meanwhile."""
        for msg in msgs:
            try:
                await msg.in_progress()
            except Exception:
                return  # NATS is away too; a redelivery then is deduplicated by the inbox

    async def _recreate(self, delay: float) -> None:
        await asyncio.sleep(delay)
        try:
            await self._ensure_consumer()
        except Exception as exc:
            log.warning("consumer.recreate_failed", consumer=self.name, error=str(exc))

    async def _process(self, msgs: list[Msg]) -> None:
        decoded = []
        for msg in msgs:
            try:
                decoded.append((msg, *_decode(msg)))
            except Undecodable as exc:
                decoded.append((msg, None, exc))
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                fresh = await self._claim(conn, [(m, raw) for m, raw, _ in decoded if raw is not None])
                for msg, raw, event in decoded:
                    if raw is None:
                        await self._park(conn, msg, None, event, attempts=1)
                    elif raw.event_id in fresh:
                        fresh.discard(raw.event_id)
                        await self.handle(conn, raw, event)
                        self.applied += 1
        except store.TRANSIENT:
            raise  # nothing committed: the whole batch goes again after the backoff
        except Exception as exc:
            log.warning("consumer.batch_failed", consumer=self.name, error=str(exc), size=len(msgs))
            for msg, raw, event in decoded:
                await self._one(msg, raw, event)
            return
        await self._ack(msgs)

    async def _ack(self, msgs: list[Msg]) -> None:
        for msg in msgs:
            await msg.ack()

    async def _claim(self, conn, items) -> set[str]:
        if not items:
            return set()
        rows = await conn.fetch(
            f"""INSERT INTO {self.schema}.inbox (consumer, event_id, stream_seq)
                SELECT $1, * FROM unnest($2::uuid[], $3::bigint[])
                ON CONFLICT DO NOTHING RETURNING event_id::text""",
            self.name,
            [raw.event_id for _, raw in items],
            [m.metadata.sequence.stream for m, _ in items],
        )
        return {r["event_id"] for r in rows}

    async def _one(self, msg: Msg, raw, event) -> None:
        """One message in its own transaction, retried in place, parked after ``park_after``."""
        attempts = msg.metadata.num_delivered - 1
        while True:
            attempts += 1
            try:
                async with self.pool.acquire() as conn, conn.transaction():
                    if raw is None:
                        await self._park(conn, msg, None, event, attempts)
                    elif await self._claim(conn, [(msg, raw)]):
                        await self.handle(conn, raw, event)
                        self.applied += 1
                await msg.ack()
                return
            except store.TRANSIENT:
                raise  # not this message's fault: the batch goes again, nothing is parked
            except Exception as exc:
                if attempts < self.park_after:
                    await asyncio.sleep(self.retry_delay * 2 ** (attempts - 1))
                    await msg.in_progress()
                    continue
                async with self.pool.acquire() as conn, conn.transaction():
                    if raw is not None:
                        await self._claim(conn, [(msg, raw)])
                    await self._park(conn, msg, raw, exc, attempts)
                await msg.ack()
                return

    async def _park(self, conn, msg: Msg, raw, error: Exception, attempts: int) -> None:
        self.parked += 1
        log.error("consumer.parked", consumer=self.name, subject=msg.subject,
                  seq=msg.metadata.sequence.stream, error=str(error), attempts=attempts)
        await conn.execute(
            f"""INSERT INTO {self.schema}.dead_letters
                  (consumer, event_id, subject, stream_seq, payload, error, attempts)
                VALUES ($1, $2, $3, $4, $5, $6, $7)""",
            self.name,
            raw.event_id if raw is not None else None,
            msg.subject,
            msg.metadata.sequence.stream,
            msg.data,
            f"{type(error).__name__}: {error}",
            attempts,
        )
