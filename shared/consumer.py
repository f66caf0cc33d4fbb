"""Durable JetStream pull consumers whose effects commit with a record of what they consumed.

For each fetched batch, one PostgreSQL transaction records (consumer, event id) in the inbox and
applies the handler's effect for every event not seen before; the messages are acknowledged after
the commit. A redelivery, a replay or a restart therefore changes nothing. A message whose handler
keeps failing is retried in place (so the stream order holds) and, after ``park_after`` attempts,
parked in ``dead_letters`` with its error, instead of blocking the stream forever; its inbox row
then says ``parked`` (a redelivery does not run it again, and ``cordon dead-letters replay``, in
:mod:`shared.dead_letters`, applies it once later). A failure that is not the message's fault (PostgreSQL away, out of connections, read-only after a fail-over:
``store.TRANSIENT``) parks nothing: the batch is held and tried again, before any later message.

One instance pulls a durable consumer at a time, however many replicas of the service run: two
pullers would each take batches and commit them in either order, applying a stream's later events
first. The active one holds a PostgreSQL advisory lock on the connection its batches commit on,
so if that connection dies (and the lock with it) nothing more of its can commit; the others wait
on the lock. Whoever takes the lead first rewinds the durable consumer to its ack floor, so what
the previous holder left unacknowledged comes again first, in stream order, rather than after
``ack_wait`` behind newer messages (the inbox drops what had been applied).
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

from shared import bus
from shared import envelope as env
from shared import store
from shared import log as logging
from shared.tasks import cancel
from shared.pull import ConsumerGone, Interrupted, Puller
from shared.subjects import STREAM

log = logging.get("consumer")

Handle = Callable[[asyncpg.Connection, env.RawEnvelope, env.Event], Awaitable[None]]
#: A batch's new events at once, in stream order, inside the batch's transaction.
HandleMany = Callable[[asyncpg.Connection, list[tuple[env.RawEnvelope, env.Event]]], Awaitable[None]]


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
        handle_many: HandleMany | None = None,
        batch: int = 256,
        park_after: int = 5,
        ack_wait: float = 30.0,
        retry_delay: float = 0.05,
    ):
        self.name = name
        self.schema = schema
        self.subjects = subjects
        self.handle = handle
        #: Given, a batch's new events go to it at once (``handle`` then applies one alone: the
        #: fallback of a batch that failed, and dead letters' replay).
        self.handle_many = handle_many
        self.pool = pool
        self.nc = nc
        self.js = nc.jetstream()
        self.batch = batch
        self.park_after = park_after
        self.ack_wait = ack_wait
        self.retry_delay = retry_delay
        self._task: asyncio.Task | None = None
        self._puller: Puller | None = None
        #: The connection that holds the lead (an advisory lock) and commits every batch.
        self._conn: asyncpg.Connection | None = None
        #: Waiting for the lead while another instance pulls (health shows it).
        self.standby = False
        self.standby_poll = 1.0
        #: Idle this long with nothing of ours unacknowledged, the server should agree; if it still
        #: counts messages awaiting an ack, the acks were lost on their way (a node of the cluster
        #: died with them): rewind now rather than wait ``ack_wait`` for them to come again.
        self.ack_check_after = 3.0
        self._acked_at = self._checked_at = 0.0
        self.applied = 0
        self.parked = 0
        #: Messages the server had delivered before (num_delivered > 1): its ack_wait ran out, or a
        #: rewind sent them again.
        self.redelivered = 0
        self.last_error: str | None = None

    @property
    def attached(self) -> bool:
        """Pulling as the leader, or waiting on standby for the lead: the consumer is running."""
        return (self._task is not None and not self._task.done()
                and (self.standby or (self._conn is not None and self._puller is not None)))

    async def start(self) -> None:
        # The durable consumer exists once the service has started (as it always did), even on a
        # standby replica; only the leader rewinds it. A cluster electing its leaders is waited for.
        await bus.patiently(self._ensure_consumer, f"consumer {self.name}")
        self._task = asyncio.create_task(self._run(), name=f"consumer.{self.name}")

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None
        await self._step_down()

    async def _step_down(self) -> None:
        """Stop pulling and give up the lead (releasing the connection unlocks it)."""
        await self._drop_puller()
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await self.pool.release(conn)
            except Exception:  # a broken connection: the server dropped its lock with it
                conn.terminate()

    async def _lead(self) -> None:
        """Wait for the lead, rewind the durable consumer to its ack floor, start pulling."""
        self._conn = await self.pool.acquire()
        key = f"consumer:{self.schema}.{self.name}"
        while not await self._conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", key):
            self.standby = True
            await asyncio.sleep(self.standby_poll)
        self.standby = False
        await self._restart()
        log.info("consumer.leading", consumer=self.name)

    async def _restart(self) -> None:
        """Rewind to the ack floor (if anything is unacknowledged) and pull from there, deliveries
        checked for gaps from the consumer's last delivery number on."""
        delivered = await self._rewind()
        self._puller = Puller(self.nc, self.name, batch=self.batch, delivered=delivered)
        await self._puller.start()

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

    def _config(self, start_seq: int | None = None) -> ConsumerConfig:
        return ConsumerConfig(
            durable_name=self.name,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE if start_seq else DeliverPolicy.ALL,
            opt_start_seq=start_seq,
            ack_wait=self.ack_wait,
            max_deliver=-1,
            max_ack_pending=max(self.batch * 4, 1000),
            filter_subjects=self.subjects if len(self.subjects) > 1 else None,
            filter_subject=self.subjects[0] if len(self.subjects) == 1 else None,
        )

    async def _ensure_consumer(self) -> None:
        try:
            await self.js.add_consumer(STREAM, self._config())
        except APIError:
            await self.js.consumer_info(STREAM, self.name)  # exists already: keep its position

    async def _rewind(self) -> int | None:
        """Make what is unacknowledged come first: reset the consumer to its ack floor (JetStream's
        consumer reset, nats-server 2.14+). The consumer stays what it is (on a cluster, its
        replicas stay where they are: deleting and creating it again would need every node up to
        place it). Returns the consumer's last delivery number (0 after a reset; None if unknown)."""
        try:
            info = await self.js.consumer_info(STREAM, self.name)
        except NotFoundError:
            await self._ensure_consumer()
            return None
        if not info.num_ack_pending:
            return info.delivered.consumer_seq if info.delivered else None  # the next is the next in order
        floor = info.ack_floor.stream_seq if info.ack_floor else 0
        reset = await self.js.reset_consumer(STREAM, self.name)
        log.info("consumer.rewound", consumer=self.name, to=floor + 1, unacknowledged=info.num_ack_pending)
        return reset.info.delivered.consumer_seq if reset.info.delivered else 0

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
                if self._conn is None:
                    held = msgs = []  # a new lead rewinds to the ack floor: they come again
                    await self._lead()
                elif self._puller is None:
                    held = msgs = []
                    await self._restart()
                if not msgs:
                    msgs = await self._puller.next_batch(timeout=1.0)
                if msgs:
                    await self._process(msgs)
                else:
                    await self._check_acks()
                held, backoff = [], 0.1
            except asyncio.CancelledError:
                raise
            except Interrupted as exc:
                held = []  # what was received after the gap comes again, in order, after the rewind
                log.warning("consumer.interrupted", consumer=self.name, why=str(exc))
                await self._drop_puller()
            except (ConsumerGone, NotFoundError):
                held = []  # the consumer starts again from its new position; the inbox dedupes
                await self._drop_puller()
                await self._recreate(backoff)
                backoff = min(backoff * 2, 5.0)
            except Exception as exc:
                held = msgs
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("consumer.retry", consumer=self.name, error=self.last_error, held=len(held))
                if self._lost() or isinstance(exc, store.TRANSIENT):
                    await self._step_down()  # the lock may be gone with the connection: lead again
                await asyncio.sleep(backoff)
                await self._still_working(held)
                backoff = min(backoff * 2, 5.0)

    def _lost(self) -> bool:
        """True if the lead connection is gone. When the server ends a pooled connection (a
        restart), asyncpg hands it back to the pool at once and every call on our handle to it
        raises, ``is_closed()`` too: raised here, that ended the consumer's task for good."""
        try:
            return self._conn is None or self._conn.is_closed()
        except asyncpg.InterfaceError:  # released back to the pool: closed under us
            return True

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
            self._puller = Puller(self.nc, self.name, batch=self.batch)
            await self._puller.start()
        except Exception as exc:
            log.warning("consumer.recreate_failed", consumer=self.name, error=str(exc))
            await self._step_down()

    async def _process(self, msgs: list[Msg]) -> None:
        decoded = []
        for msg in msgs:
            if msg.metadata.num_delivered > 1:
                self.redelivered += 1
            try:
                decoded.append((msg, *_decode(msg)))
            except Undecodable as exc:
                decoded.append((msg, None, exc))
        try:
            conn = self._conn
            async with conn.transaction():
                items = [(m, raw) for m, raw, _ in decoded if raw is not None]
                fresh, applied = await self._fresh(conn, items), []
                for msg, raw, event in decoded:
                    if raw is not None and raw.event_id in fresh:
                        fresh.discard(raw.event_id)
                        if self.handle_many is None:
                            await self.handle(conn, raw, event)
                        applied.append((msg, raw, event))
                if self.handle_many is not None and applied:
                    await self.handle_many(conn, [(raw, event) for _, raw, event in applied])
                applied = [(msg, raw) for msg, raw, _ in applied]
                # Written last: until a handler writes, the transaction has no id, and holds
                # back no relay (they publish only below the oldest open transaction). A
                # reaction's handler waits on the commands it sends for a while.
                await self._claim(conn, applied)
                for msg, raw, error in decoded:
                    if raw is None:
                        await self._park(conn, msg, None, error, attempts=1)
                self.applied += len(applied)
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
        self._acked_at = asyncio.get_running_loop().time()

    async def _check_acks(self) -> None:
        """Idle, with everything received acknowledged: :class:`Interrupted` if the server still
        awaits acks (see ``ack_check_after``). Once after each spell of work: only acks sent since
        the last look can have been lost."""
        now = asyncio.get_running_loop().time()
        if self._acked_at <= self._checked_at or now - self._acked_at < self.ack_check_after:
            return
        self._checked_at = now
        info = await self.js.consumer_info(STREAM, self.name)
        if info.num_ack_pending:
            raise Interrupted(f"the server awaits {info.num_ack_pending} acknowledgements already sent")

    async def _fresh(self, conn, items) -> set[str]:
        """The event ids of ``items`` not applied yet (one puller at a time: no race)."""
        if not items:
            return set()
        seen = await conn.fetch(
            f"SELECT event_id::text FROM {self.schema}.inbox WHERE consumer = $1 AND event_id = ANY($2::uuid[])",
            self.name, [raw.event_id for _, raw in items])
        return {raw.event_id for _, raw in items} - {r["event_id"] for r in seen}

    async def _claim(self, conn, items, parked: bool = False) -> set[str]:
        """Record ``items`` as applied (or ``parked``: not applied, not to be run again unless
        replayed); the ids that were not recorded before."""
        if not items:
            return set()
        rows = await conn.fetch(
            f"""INSERT INTO {self.schema}.inbox (consumer, event_id, stream_seq, parked)
                SELECT $1, e, s, $4 FROM unnest($2::uuid[], $3::bigint[]) AS u(e, s)
                ON CONFLICT DO NOTHING RETURNING event_id::text""",
            self.name,
            [raw.event_id for _, raw in items],
            [m.metadata.sequence.stream for m, _ in items],
            parked,
        )
        return {r["event_id"] for r in rows}

    async def _one(self, msg: Msg, raw, event) -> None:
        """One message in its own transaction, retried in place, parked after ``park_after``."""
        attempts = msg.metadata.num_delivered - 1
        while True:
            attempts += 1
            try:
                conn = self._conn
                async with conn.transaction():
                    if raw is None:
                        await self._park(conn, msg, None, event, attempts)
                    elif await self._fresh(conn, [(msg, raw)]):
                        await self.handle(conn, raw, event)
                        await self._claim(conn, [(msg, raw)])
                        self.applied += 1
                await msg.ack()
                self._acked_at = asyncio.get_running_loop().time()
                return
            except store.TRANSIENT:
                raise  # not this message's fault: the batch goes again, nothing is parked
            except Exception as exc:
                if attempts < self.park_after:
                    await asyncio.sleep(self.retry_delay * 2 ** (attempts - 1))
                    await msg.in_progress()
                    continue
                async with conn.transaction():
                    if raw is not None:
                        await self._claim(conn, [(msg, raw)], parked=True)
                    await self._park(conn, msg, raw, exc, attempts)
                await msg.ack()
                self._acked_at = asyncio.get_running_loop().time()
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
